"""DCGM 4 at the pinned version and held, its host engine enabled; on a GPU host it sees every GPU."""

from __future__ import annotations

import re

import pytest
from nodecheck import held_packages


def _legacy_kept(host, expect) -> bool:
    legacy = [name for name in expect["dcgm_legacy_packages"] if host.package(name).is_installed]
    return bool(legacy) and not expect.flag("dcgm_replace_legacy")


def test_dcgm_packages_pinned_and_held(host, expect):
    if _legacy_kept(host, expect):
        pytest.skip("DCGM 3 from the image is kept (dcgm_replace_legacy is false)")
    for name in expect["dcgm_legacy_packages"]:
        assert not host.package(name).is_installed, f"{name} (DCGM 3) beside DCGM 4"
    held = held_packages(host)
    for name in expect["dcgm_packages"]:
        pkg = host.package(name)
        assert pkg.is_installed, name
        assert pkg.version == str(expect["dcgm_version"]), f"{name} {pkg.version}"
        assert name in held, f"{name} is not held"


def test_dcgm_host_engine_enabled(host):
    # DCGM 3 ships the same unit name, so this holds for a kept DCGM 3 too.
    assert host.service("nvidia-dcgm").is_enabled


@pytest.mark.gpu
def test_dcgm_sees_every_gpu(gpu_host):
    assert gpu_host.service("nvidia-dcgm").is_running
    gpus = gpu_host.check_output("nvidia-smi -L").splitlines()
    listed = gpu_host.check_output("dcgmi discovery -l")
    found = re.search(r"(\d+) GPUs? found", listed)
    assert found and int(found.group(1)) == len(gpus), listed


@pytest.mark.gpu
def test_dcgm_quick_diagnostic_passes(gpu_host):
    """`dcgmi diag -r 1` (seconds): deployment, driver, permissions, persistence, environment."""
    out = gpu_host.run("dcgmi diag -r 1")
    assert out.rc == 0, out.stdout[-3000:] + out.stderr[-1000:]
    failed = [line.strip() for line in out.stdout.splitlines() if re.search(r"\bFail\b", line)]
    assert not failed, failed
