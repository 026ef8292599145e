"""NVIDIA driver: the pinned branch/version installed from the right source, held, persistenced."""

from __future__ import annotations

import re

import pytest
from nodecheck import held_packages, installed_version, upstream

HOLD = re.compile(r"^(nvidia-|libnvidia-|libcuda|cuda-drivers|xserver-xorg-video-nvidia|firmware-nvidia)")
HOLD_ELSEWHERE = re.compile(r"^(nvidia-fabricmanager|libnvidia-nscq|cuda-drivers-fabricmanager)")


def test_driver_installed_on_pinned_branch(host, expect):
    version = installed_version(host, expect.driver_package)
    assert version, f"{expect.driver_package} is not installed"
    assert upstream(version).startswith(expect.driver_branch + "."), version
    if expect.driver_flavour == "cuda_repo" and expect["nvidia_driver_version"]:
        assert upstream(version) == expect["nvidia_driver_version"]


def test_driver_packages_held(host, expect):
    names = host.check_output("dpkg-query -W -f '${Package} ${db:Status-Status}\\n'").splitlines()
    installed = {n.split()[0] for n in names if n.endswith(" installed")}
    driver = {n for n in installed if HOLD.match(n) and not HOLD_ELSEWHERE.match(n)}
    assert expect.driver_package in driver
    assert driver - held_packages(host) == set()


def test_apt_pins_the_driver_source(host, expect):
    pref = host.file("/etc/apt/preferences.d/aidc-nvidia-driver").content_string
    if expect.driver_flavour == "debian":
        assert "Pin: release o=Debian" in pref
    else:
        wanted = expect["nvidia_driver_version"] or expect.driver_branch
        assert re.search(rf"^Pin: version {re.escape(wanted)}[-.]\*$", pref, re.M), pref


def test_cuda_repository_configured_with_keyring(host, expect):
    if not (expect.flag("nvidia_driver_configure_cuda_repo") or expect.driver_flavour == "cuda_repo"):
        assert not host.package("cuda-keyring").is_installed
        return
    assert host.file("/usr/share/keyrings/cuda-archive-keyring.gpg").is_file
    assert "cuda-keyring" in held_packages(host)
    lists = host.check_output("cat /etc/apt/sources.list.d/cuda-*.list")
    assert f"{expect['nvidia_driver_cuda_repo_url'].rstrip('/')}/ /" in lists


def test_persistenced_enabled(host):
    assert host.service("nvidia-persistenced").is_enabled


def test_persistenced_starts_in_persistence_mode(host):
    # Ubuntu's packaging passes --no-persistence-mode: the daemon would run and the GPUs still
    # deinitialise between jobs. Checked on the unit as systemd resolves it (drop-ins included).
    exec_start = host.check_output("systemctl show -p ExecStart --value nvidia-persistenced")
    assert "nvidia-persistenced" in exec_start, exec_start
    assert "--no-persistence-mode" not in exec_start, exec_start


def test_kernel_headers_for_dkms(host, expect):
    if not expect.flag("nvidia_driver_kernel_headers"):
        pytest.skip("container: nvidia_driver_kernel_headers is false (the kernel is the machine's, not the host's)")
    kernel = host.check_output("uname -r")
    assert host.package(f"linux-headers-{kernel}").is_installed, f"no headers for the running kernel {kernel}"
    assert host.file(f"/lib/modules/{kernel}/build").exists, f"/lib/modules/{kernel}/build missing: DKMS cannot build"
