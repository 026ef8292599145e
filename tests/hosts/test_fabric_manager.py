"""Fabric manager present, enabled and at the driver's exact version exactly on NVSwitch systems;
on NVLink 5 systems (HGX B200) also NVLink Subnet Manager and the ib_umad module it talks through."""

from __future__ import annotations

import pytest
from nodecheck import held_packages, installed_version, pci_devices, upstream

MODULES_LOAD = "/etc/modules-load.d/aidc-fabric-manager.conf"


def _mode(expect, key: str) -> str:
    return str(expect[key]).lower()


def _on_pci(host, ids: list[str], cls: str | None = None) -> bool:
    wanted = {"0x" + i.replace(":", ":0x") for i in ids}
    return any(d in wanted or (cls is not None and d.startswith("0x10de:") and c.startswith("0x" + cls))
               for d, c in pci_devices(host))


def _nvl5_expected(host, expect, instance_type) -> bool:
    """Fifth-generation NVSwitches have no PCI device: the B200 GPUs or the instance type tell."""
    mode = _mode(expect, "fabric_manager_nvl5")
    if mode != "auto":
        return mode == "true"
    return (_on_pci(host, expect["fabric_manager_nvl5_gpu_pci_ids"])
            or instance_type in expect["fabric_manager_nvl5_instance_types"])


def _nvswitch_expected(host, expect, instance_type) -> bool:
    mode = _mode(expect, "fabric_manager_enabled")
    if mode != "auto":
        return mode == "true"
    return (_on_pci(host, expect["fabric_manager_nvswitch_pci_ids"], expect["fabric_manager_nvswitch_pci_class"])
            or instance_type in expect["fabric_manager_nvswitch_instance_types"]
            or _nvl5_expected(host, expect, instance_type))


def _installed(host, pattern: str) -> dict[str, str]:
    query = f"dpkg-query -W -f '${{Package}} ${{Version}} ${{db:Status-Status}}\\n' '{pattern}'"
    out = host.check_output(f"{query} || true")
    rows = (line.split() for line in out.splitlines())
    return {r[0]: r[1] for r in rows if len(r) == 3 and r[2] == "installed"}


def test_fabric_manager_exactly_on_nvswitch_systems(host, expect, instance_type_name):
    packages = _installed(host, "nvidia-fabricmanager*")
    if not _nvswitch_expected(host, expect, instance_type_name):
        assert packages == {}, "fabric manager installed on a host without NVSwitch"
        assert not host.service("nvidia-fabricmanager").is_enabled
        return
    assert len(packages) == 1, packages
    (name, version), = packages.items()
    driver = installed_version(host, expect.driver_package)
    assert driver and upstream(version) == upstream(driver), f"{name} {version} vs driver {driver}"
    assert name in held_packages(host)
    assert host.service("nvidia-fabricmanager").is_enabled


def test_nscq_at_the_driver_version_on_nvswitch_systems(host, expect, instance_type_name):
    """DCGM reads NVSwitch health through NSCQ, which must match the driver exactly (and stay held)."""
    packages = _installed(host, "libnvidia-nscq*")
    if not _nvswitch_expected(host, expect, instance_type_name):
        # An image may carry NSCQ; the role must not have pinned it where there is no NVSwitch.
        assert not set(packages) & held_packages(host), f"NSCQ held on a host without NVSwitch: {packages}"
        return
    assert len(packages) == 1, f"NVSwitch system needs exactly one libnvidia-nscq package: {packages}"
    (name, version), = packages.items()
    driver = installed_version(host, expect.driver_package)
    assert driver and upstream(version) == upstream(driver), f"{name} {version} vs driver {driver}"
    assert name in held_packages(host)


def test_nvlink_subnet_manager_exactly_on_nvlink5_systems(host, expect, instance_type_name):
    nvlsm = host.package("nvlsm")
    if not (_nvswitch_expected(host, expect, instance_type_name) and _nvl5_expected(host, expect, instance_type_name)):
        # Images may carry nvlsm everywhere (fabric manager only starts it on NVLink 5): the role
        # must not have pinned it or the modules here.
        assert "nvlsm" not in held_packages(host), "nvlsm held on a host that is not an NVLink 5 system"
        assert not host.file(MODULES_LOAD).exists
        return
    assert nvlsm.is_installed, "NVLink 5 system without nvlsm: fabric manager cannot bring up NVLink"
    assert nvlsm.version == str(expect["fabric_manager_nvlsm_version"]), nvlsm.version
    assert "nvlsm" in held_packages(host)
    assert host.file("/opt/nvidia/nvlsm/sbin/nvlsm").is_executable
    assert {"mlx5_ib", "ib_umad"} <= set(host.file(MODULES_LOAD).content_string.split())


@pytest.mark.gpu
def test_fabric_manager_running_on_nvswitch_systems(gpu_host, expect, instance_type_name):
    """Without fabric manager the GPUs of an NVSwitch system (p4d, p5, p6) never finish initialising:
    CUDA fails with error 802 "system not yet initialized"."""
    if not _nvswitch_expected(gpu_host, expect, instance_type_name):
        pytest.skip("not an NVSwitch system (no NVSwitch on the PCI bus, instance type without NVSwitch)")
    assert gpu_host.service("nvidia-fabricmanager").is_running


def fabric_states(nvidia_smi_q: str) -> list[str]:
    """The ``State`` of each GPU's ``Fabric`` section in ``nvidia-smi -q`` output."""
    lines = [line.strip() for line in nvidia_smi_q.splitlines()]
    states = []
    for i, line in enumerate(lines):
        if line == "Fabric":
            state = next((x for x in lines[i + 1:i + 4] if x.startswith("State")), "State : (none)")
            states.append(state.split(":", 1)[1].strip())
    return states


@pytest.mark.gpu
def test_nvlink5_fabric_is_up_on_every_gpu(gpu_host, expect, instance_type_name):
    """The proof that fabric manager, nvlsm and the InfiniBand path work: every GPU's fabric state is
    Completed (a GPU whose fabric never came up fails CUDA init with error 802)."""
    if not _nvl5_expected(gpu_host, expect, instance_type_name):
        pytest.skip("not an NVLink 5 system (no B200 GPU on the PCI bus, instance type not NVLink 5)")
    assert gpu_host.service("nvidia-fabricmanager").is_running
    for module in ("mlx5_ib", "ib_umad"):
        assert gpu_host.run(f"test -d /sys/module/{module}").rc == 0, f"{module} is not loaded"
    assert gpu_host.check_output("ls /sys/class/infiniband"), "no InfiniBand device: the NVSwitch bridges are missing"
    gpus = gpu_host.check_output("nvidia-smi -L").splitlines()
    states = fabric_states(gpu_host.check_output("nvidia-smi -q"))
    assert states == ["Completed"] * len(gpus), states
