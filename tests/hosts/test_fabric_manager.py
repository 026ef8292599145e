"""Fabric manager present, enabled and at the driver's exact version exactly on NVSwitch systems."""

from __future__ import annotations

from nodecheck import held_packages, installed_version, pci_devices, upstream


def _nvswitch_expected(host, expect) -> bool:
    mode = str(expect["fabric_manager_enabled"]).lower()
    if mode != "auto":
        return mode == "true"
    ids = {"0x" + i.replace(":", ":0x") for i in expect["fabric_manager_nvswitch_pci_ids"]}
    cls = "0x" + expect["fabric_manager_nvswitch_pci_class"]
    return any(d in ids or (d.startswith("0x10de:") and c.startswith(cls)) for d, c in pci_devices(host))


def _fm_packages(host) -> dict[str, str]:
    query = "dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}\\n' 'nvidia-fabricmanager*'"
    out = host.check_output(f"{query} || true")
    rows = (line.split() for line in out.splitlines())
    return {r[0]: r[1] for r in rows if len(r) == 3 and r[2] == "installed"}


def test_fabric_manager_exactly_on_nvswitch_systems(host, expect):
    packages = _fm_packages(host)
    if not _nvswitch_expected(host, expect):
        assert packages == {}, "fabric manager installed on a host without NVSwitch"
        assert not host.service("nvidia-fabricmanager").is_enabled
        return
    assert len(packages) == 1, packages
    (name, version), = packages.items()
    driver = installed_version(host, expect.driver_package)
    assert driver and upstream(version) == upstream(driver), f"{name} {version} vs driver {driver}"
    assert name in held_packages(host)
    assert host.service("nvidia-fabricmanager").is_enabled
