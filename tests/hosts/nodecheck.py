"""Helpers shared by the node checks (imported by tests/hosts test modules and conftest)."""

from __future__ import annotations

PCI_SCAN = ('for d in /sys/bus/pci/devices/*; do printf "%s:%s %s\\n" "$(cat $d/vendor)" '
            '"$(cat $d/device)" "$(cat $d/class)"; done')


#: One-process NCCL all-reduce through torch (run with the host's Python, see --aidc-python).
ALL_REDUCE = """
import os, tempfile, torch, torch.distributed as dist
path = os.path.join(tempfile.mkdtemp(), "rendezvous")
dist.init_process_group("nccl", init_method="file://" + path, rank=0, world_size=1)
x = torch.full((1 << 20,), 3.0, device="cuda")
dist.all_reduce(x)
torch.cuda.synchronize()
assert torch.all(x == 3.0).item(), x[:4]
print("nccl", ".".join(map(str, torch.cuda.nccl.version())), torch.cuda.get_device_name(0))
dist.destroy_process_group()
"""


def pci_devices(host) -> list[tuple[str, str]]:
    """(vendor:device, class) of every PCI device, e.g. ("0x10de:0x22a3", "0x068000")."""
    out = host.run(PCI_SCAN)
    assert out.rc == 0, out.stderr
    return [tuple(line.split()) for line in out.stdout.splitlines() if line.strip()]


def held_packages(host) -> set[str]:
    out = host.run("apt-mark showhold")
    assert out.rc == 0, out.stderr
    return set(out.stdout.split())


def installed_version(host, name: str) -> str | None:
    pkg = host.package(name)
    return pkg.version if pkg.is_installed else None


def upstream(version: str) -> str:
    """Upstream part of a Debian version: 1:570.172.08-0ubuntu1 -> 570.172.08."""
    return version.split(":")[-1].rsplit("-", 1)[0]
