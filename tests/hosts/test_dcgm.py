"""DCGM 4 at the pinned version and held, its host engine enabled; on a GPU host it sees every GPU.
dcgm-exporter pinned and held, reading that host engine; on a GPU host it serves one series per GPU."""

from __future__ import annotations

import re
import shlex

import pytest
from nodecheck import held_packages

EXPORTER = "datacenter-gpu-manager-exporter"
EXPORTER_UNIT = "nvidia-dcgm-exporter"


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


def _exporter_expected(host, expect) -> None:
    if not expect.flag("dcgm_exporter"):
        pytest.skip("dcgm_exporter is false")
    if _legacy_kept(host, expect):
        pytest.skip("DCGM 3 from the image is kept (dcgm_replace_legacy is false): no dcgm-exporter")


def test_dcgm_exporter_pinned_and_held(host, expect):
    _exporter_expected(host, expect)
    pkg = host.package(EXPORTER)
    assert pkg.is_installed, EXPORTER
    pin = str(expect["dcgm_exporter_version"])
    # An epoch-less pin matches the repository's version with any epoch (as the role resolves it).
    ok = pkg.version == pin or (":" not in pin and re.fullmatch(r"[0-9]+:" + re.escape(pin), pkg.version))
    assert ok, f"{EXPORTER} {pkg.version}, pinned {pin}"
    assert EXPORTER in held_packages(host), f"{EXPORTER} is not held"


def test_dcgm_exporter_reads_the_host_engine(host, expect):
    """The unit systemd runs (package unit + drop-in), not the drop-in file: a typo in a section name
    or a missing daemon-reload leaves the packaged embedded-engine command line in force."""
    _exporter_expected(host, expect)
    unit = host.service(EXPORTER_UNIT)
    assert unit.is_enabled
    exec_start = host.check_output(f"systemctl show -p ExecStart --value {EXPORTER_UNIT}")
    argv = shlex.split(re.search(r"argv\[\]=([^;]*);", exec_start).group(1))
    assert argv[0] == "/usr/bin/dcgm-exporter", exec_start
    flags = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert flags.get("--remote-hostengine-info") == expect["dcgm_exporter_hostengine"], argv
    assert flags.get("--address") == expect["dcgm_exporter_listen"], argv
    assert host.file(flags.get("--collectors", "")).is_file, argv
    props = host.check_output(f"systemctl show -p Requires -p Restart -p StandardOutput {EXPORTER_UNIT}")
    assert "nvidia-dcgm.service" in props and "Restart=on-failure" in props, props
    assert "StandardOutput=journal" in props, props
    # ... and the host engine pulls it back up when it starts again after a stop.
    wants = host.check_output("systemctl show -p Wants --value nvidia-dcgm").split()
    assert f"{EXPORTER_UNIT}.service" in wants, wants


@pytest.mark.gpu
def test_dcgm_exporter_serves_every_gpu(gpu_host, expect):
    _exporter_expected(gpu_host, expect)
    assert gpu_host.service(EXPORTER_UNIT).is_running
    # "running" includes a crash loop between restarts (a port taken by another exporter).
    restarts = gpu_host.check_output(f"systemctl show -p NRestarts --value {EXPORTER_UNIT}")
    assert restarts == "0", f"{EXPORTER_UNIT} restarted {restarts} times: journalctl -u {EXPORTER_UNIT}"
    address, port = str(expect["dcgm_exporter_listen"]).rsplit(":", 1)
    url = f"http://{address.strip('[]') and address or '127.0.0.1'}:{port}/metrics"
    fetch = f"python3 -c \"import urllib.request as u; print(u.urlopen('{url}', timeout=20).read().decode())\""
    metrics = gpu_host.check_output(fetch)
    gpus = gpu_host.check_output("nvidia-smi -L").splitlines()
    # Every GPU has series (a GPU the host engine lost would be missing), whatever the counters file.
    labels = {m.group(1) for m in re.finditer(r'^DCGM_FI_\w+\{[^}]*\bgpu="(\d+)"', metrics, re.MULTILINE)}
    assert labels == {str(i) for i in range(len(gpus))}, metrics[:3000]
