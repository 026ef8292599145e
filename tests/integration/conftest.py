"""Fixtures for integration tests on disposable hosts (tests/testbed) and the stand-in NVIDIA repo.

Host tests need root, systemd-nspawn, debootstrap and apt-cacher-ng (``.ci/hosts-prereqs.sh``).
Without them they skip with the reason, except when ``AIDC_REQUIRE_HOSTS=1`` (CI), where a missing
prerequisite is a failure: CI must never pass by skipping its host tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
HOST_TOOLS = ("systemd-nspawn", "debootstrap", "apt-cacher-ng", "apt-ftparchive", "dpkg-deb", "gpg", "ssh")

#: Every host: no GPU, read-only /proc/sys (see common_sysctl_apply_runtime), stand-in CUDA repo.
CONTAINER_VARS = yaml.safe_load((REPO / "tests/testbed/container_vars.yml").read_text())
#: Host 0: Debian flavour, Debian's real nvidia-driver packages; NCCL from the stand-in repo.
DEBIAN_HOST_VARS = {**CONTAINER_VARS}
#: Host 1: the Ubuntu/CUDA-repo code path against the stand-in repo, fabric manager forced on.
CUDA_REPO_HOST_VARS = {**CONTAINER_VARS, "nvidia_driver_source": "cuda_repo", "fabric_manager_enabled": True}


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
                      pins["aidc_driver_version"], pins["aidc_nccl_version"])


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
def two_hosts(host_prerequisites, standin_repo) -> Iterator[Testbed]:
    """Two hosts: 0 = Debian flavour (real Debian driver), 1 = stand-in CUDA repo + fabric manager."""
    from tests.testbed import testbed

    workdir = Path(tempfile.mkdtemp(prefix="aidc-bed-", dir="/tmp"))
    try:
        with testbed(workdir, 2, binds=[f"{standin_repo}:{STANDIN_MOUNT}"],
                     host_vars={0: DEBIAN_HOST_VARS, 1: CUDA_REPO_HOST_VARS}) as bed:
            yield bed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
