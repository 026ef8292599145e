"""The node is the instance type it should be: NVIDIA GPUs and EFA devices on its PCI bus match the
catalog. Not GPU-marked on purpose: a node that lost its GPUs or EFA NICs (a wrong launch template,
a bad host) must fail here rather than have its GPU and EFA checks skip."""

from __future__ import annotations

import re

import pytest
from nodecheck import pci_devices

from infra.catalog import instance_type

EFA_DEVICE = re.compile(r"^0x1d0f:0xefa[0-9a-f]$")
NVIDIA_GPU = re.compile(r"^0x030[02]")  # display controllers: VGA (0300) and 3D (0302)


@pytest.fixture(scope="module")
def wanted(instance_type_name):
    if not instance_type_name:
        pytest.skip("no --aidc-instance-type (nor aidc_instance_type in the inventory): expected counts unknown")
    return instance_type(instance_type_name)


def test_gpu_count_matches_the_instance_type(host, wanted):
    on_bus = [d for d, cls in pci_devices(host) if d.startswith("0x10de:") and NVIDIA_GPU.match(cls)]
    # Some VMs do not mirror a passed-through GPU in sysfs; the driver's list counts then.
    listed = host.run("nvidia-smi -L").stdout.count("GPU ") if not on_bus else 0
    assert max(len(on_bus), listed) == wanted.gpus, f"{len(on_bus) or listed} GPUs, {wanted.name} has {wanted.gpus}"


def test_efa_count_matches_the_instance_type(host, wanted):
    found, efa = sum(1 for d, _cls in pci_devices(host) if EFA_DEVICE.match(d)), wanted.efa_interfaces
    assert found == efa, f"{found} EFA devices on the PCI bus, {wanted.name} has {efa}"
