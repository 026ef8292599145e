"""EFA software (installer at the pinned version, aws-ofi-nccl plugin, linker path) exactly where the
efa role puts it; on hosts with an EFA device, libfabric's EFA provider sees every device."""

from __future__ import annotations

import re
import shlex

import pytest
from nodecheck import ALL_REDUCE, pci_devices

MARKER = "/opt/amazon/efa_installed_packages"
EFA_DEVICE = re.compile(r"^0x1d0f:0xefa[0-9a-f]$")


def _efa_devices(host) -> list[str]:
    return [d for d, _cls in pci_devices(host) if EFA_DEVICE.match(d)]


def _expected(host, expect) -> bool:
    mode = str(expect["efa_enabled"]).lower()
    return mode == "true" if mode != "auto" else bool(_efa_devices(host))


def _installed_version(host) -> str | None:
    marker = host.file(MARKER)
    if not marker.exists:
        return None
    found = re.search(r"^# EFA installer version: *(\S+)", marker.content_string, re.M)
    return found.group(1) if found else ""


def _ours(host, expect) -> str | None:
    record = host.file(expect["efa_record_file"])
    if not record.exists:
        return None
    found = re.search(r"^aidc efa role installed (\S+)", record.content_string, re.M)
    return found.group(1) if found else ""


def test_efa_installer_at_pin_exactly_where_expected(host, expect):
    if not _expected(host, expect):
        assert not host.file(expect["efa_ld_conf_file"]).exists, "efa role ran on a host without EFA"
        return
    version, ours = _installed_version(host), _ours(host, expect)
    assert version is not None, f"{MARKER} missing: EFA is not installed"
    if ours != version and not expect.flag("efa_replace_preinstalled"):
        pytest.skip(f"EFA {version} came with the image and is kept (efa_replace_preinstalled is false)")
    pin = str(expect["efa_installer_version"])
    assert version == pin, f"EFA installer {version}, pin {pin}"
    assert ours == version, f"{expect['efa_record_file']} says {ours!r}"
    assert host.file("/opt/amazon/efa/bin/fi_info").mode & 0o111


def test_aws_ofi_nccl_plugin_on_the_linker_path(host, expect):
    if not _expected(host, expect):
        pytest.skip("efa role not enabled on this host (no EFA device, efa_enabled auto/false)")
    if "--skip-plugin" in expect["efa_installer_args"]:
        pytest.skip("efa_installer_args has --skip-plugin")
    found = host.check_output("find /opt/amazon -name 'libnccl-net-ofi.so' -o -name 'libnccl-net.so'")
    plugins = found.split()
    assert plugins, "no libnccl-net(-ofi).so under /opt/amazon: NCCL would use TCP sockets"
    listed = set(host.file(expect["efa_ld_conf_file"]).content_string.split())
    for plugin in plugins:
        assert plugin.rsplit("/", 1)[0] in listed, (plugin, listed)


@pytest.mark.efa
def test_efa_provider_sees_every_device(host, expect):
    devices = _efa_devices(host)
    if not devices:
        pytest.skip(f"no EFA device on the PCI bus of {host.backend.get_pytest_id()}: EFA checks need one")
    out = host.run("/opt/amazon/efa/bin/fi_info -p efa -t FI_EP_RDM")
    assert out.rc == 0, out.stderr
    domains = set(re.findall(r"domain:\s*(\S+)", out.stdout))
    assert len(domains) == len(devices), (domains, devices)
    cache = host.check_output("ldconfig -p")
    assert re.search(r"libnccl-net(-ofi)?\.so ", cache) or "--skip-plugin" in expect["efa_installer_args"], (
        "aws-ofi-nccl plugin not in the linker cache")


@pytest.mark.efa
@pytest.mark.gpu
def test_nccl_loads_the_aws_ofi_plugin(gpu_host, expect, request):
    """The NCCL that training loads (PyTorch's own) finds aws-ofi-nccl through the linker path the
    efa role wrote, with the job environment of the nccl role: no TCP-socket fallback."""
    if not _efa_devices(gpu_host):
        pytest.skip(f"no EFA device on the PCI bus of {gpu_host.backend.get_pytest_id()}: EFA checks need one")
    python = request.config.getoption("--aidc-python")
    if gpu_host.run(f"{python} -c 'import torch'").rc != 0:
        pytest.skip(f"torch is not importable by {python} on this host; pass --aidc-python")
    env_file = expect["nccl_env_file"]
    command = (f"set -a; [ -r {env_file} ] && . {env_file}; set +a; NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET "
               f"timeout 300 {python} -c {shlex.quote(ALL_REDUCE)}")
    out = gpu_host.run(f"bash -c {shlex.quote(command)}")
    assert out.rc == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    assert re.search(r"NET/OFI|AWS Libfabric", log), "NCCL did not load aws-ofi-nccl:\n" + log[-3000:]
