"""Fixtures for integration tests on disposable hosts (tests/testbed) and the stand-in NVIDIA repo.

Host tests need root, systemd-nspawn, debootstrap and apt-cacher-ng (``.ci/hosts-prereqs.sh``).
Without them they skip with the reason, except when ``AIDC_REQUIRE_HOSTS=1`` (CI), where a missing
prerequisite is a failure: CI must never pass by skipping its host tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from tests.testbed import Testbed

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
STANDIN_MOUNT = "/srv/aidc-standin-repo"
#: Where workload hosts see the directory they all share (read-write), standing in for FSx.
SHARED_MOUNT = "/srv/aidc-shared"
HOST_TOOLS = ("systemd-nspawn", "debootstrap", "apt-cacher-ng", "apt-ftparchive", "dpkg-deb", "gpg", "ssh")

#: Every host: no GPU, read-only /proc/sys (see common_sysctl_apply_runtime), stand-in CUDA repo.
CONTAINER_VARS = yaml.safe_load((REPO / "tests/testbed/container_vars.yml").read_text())
#: Host 0: Debian flavour, Debian's real nvidia-driver packages; NCCL from the stand-in repo.
DEBIAN_HOST_VARS = {**CONTAINER_VARS}
#: Host 1: the Ubuntu/CUDA-repo code path against the stand-in repo, fabric manager forced on, as an
#: NVLink 5 (HGX B200) system: NVLink Subnet Manager too.
CUDA_REPO_HOST_VARS = {**CONTAINER_VARS, "nvidia_driver_source": "cuda_repo", "fabric_manager_enabled": True,
                       "fabric_manager_nvl5": True}


def _missing_prerequisites() -> list[str]:
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


@pytest.fixture(scope="session")
def host_prerequisites() -> None:
    missing = _missing_prerequisites()
    if not missing:
        return
    message = f"disposable hosts need {', '.join(missing)} (run .ci/hosts-prereqs.sh as root)"
    if os.environ.get("AIDC_REQUIRE_HOSTS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pins() -> dict:
    return yaml.safe_load((ANSIBLE / "group_vars/all.yml").read_text())


@pytest.fixture(scope="session")
def standin_repo(host_prerequisites, pins, tmp_path_factory) -> Path:
    """The stand-in NVIDIA repository, built once per session with the pinned versions."""
    # Imported here, not at module level: this conftest also serves the other integration tests.
    from tests.integration.standin_repo import build_repo

    return build_repo(tmp_path_factory.mktemp("standin-repo"), pins["aidc_driver_branch"],
                      pins["aidc_driver_version"], pins["aidc_nccl_version"], pins["aidc_efa_installer_version"],
                      pins["aidc_dcgm_version"], pins["aidc_dcgm_exporter_version"],
                      pins["aidc_nvlsm_version"])


@pytest.fixture(scope="session")
def standin_vars(standin_repo) -> dict:
    """Variables that point the roles at the stand-in artefacts (the EFA installer's sha256)."""
    from tests.integration.standin_repo import STANDIN_VARS

    return yaml.safe_load((standin_repo / STANDIN_VARS).read_text())


@pytest.fixture
def make_testbed(host_prerequisites, standin_repo):
    """Factory: ``with make_testbed(count, host_vars) as bed`` boots hosts, always tears down."""
    from tests.testbed import testbed

    @contextlib.contextmanager
    def _make(count: int, host_vars: dict[int, dict]) -> Iterator[Testbed]:
        workdir = Path(tempfile.mkdtemp(prefix="aidc-bed-", dir="/tmp"))
        try:
            with testbed(workdir, count, binds=[f"{standin_repo}:{STANDIN_MOUNT}"], host_vars=host_vars) as bed:
                yield bed
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    return _make


@pytest.fixture(scope="module")
def two_hosts(host_prerequisites, standin_repo, standin_vars) -> Iterator[Testbed]:
    """Two hosts: 0 = Debian flavour (real Debian driver), 1 = stand-in CUDA repo + fabric manager."""
    from tests.testbed import testbed

    workdir = Path(tempfile.mkdtemp(prefix="aidc-bed-", dir="/tmp"))
    try:
        with testbed(workdir, 2, binds=[f"{standin_repo}:{STANDIN_MOUNT}"],
                     host_vars={0: {**DEBIAN_HOST_VARS, **standin_vars},
                                1: {**CUDA_REPO_HOST_VARS, **standin_vars}}) as bed:
            yield bed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def shared_dir_of(workdir: Path) -> Path:
    """The controller's view of :data:`SHARED_MOUNT` for a bed from :func:`workload_hosts`."""
    return workdir / "shared"


def python_env_binds() -> list[str]:
    """Read-only binds that let test hosts run this checkout's venv at the same paths.

    The repository (with the venv's editable install of it), the venv, and the interpreter the venv
    points at (e.g. pyenv's under /root). An interpreter from /usr is not bound: the hosts' own
    Debian 12 python3.11 stands at that path already.
    """
    wanted = [REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    paths: list[Path] = []
    for path in wanted:
        if path == Path("/usr") or any(path == p or path.is_relative_to(p) for p in paths):
            continue
        paths.append(path)
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def workload_hosts(host_prerequisites) -> Iterator[Testbed]:
    """Two hosts on one bridge (they reach each other), running this checkout's venv read-only,
    with a read-write directory shared by both at :data:`SHARED_MOUNT` (here: ``shared_dir_of(bed.workdir)``)."""
    from tests.testbed import testbed

    workdir = Path(tempfile.mkdtemp(prefix="aidc-bed-", dir="/tmp"))
    shared = shared_dir_of(workdir)
    shared.mkdir()
    try:
        with testbed(workdir, 2, binds=python_env_binds(), host_vars={}, network="bridge",
                     binds_rw=[f"{shared}:{SHARED_MOUNT}"]) as bed:
            yield bed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def serve_host(host_prerequisites) -> Iterator[Testbed]:
    """One host running this checkout's venv read-only (the inference server's Python environment)."""
    from tests.testbed import testbed

    workdir = Path(tempfile.mkdtemp(prefix="aidc-bed-", dir="/tmp"))
    try:
        with testbed(workdir, 1, binds=python_env_binds(), host_vars={}) as bed:
            yield bed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
