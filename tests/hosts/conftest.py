"""testinfra checks for ANY node: ``pytest tests/hosts --hosts=ssh://node`` (or ``local://``,
``ansible://all --ansible-inventory=INV``).

Expectations come from the same files Ansible reads: role defaults, then
``ansible/group_vars/all.yml``, then the host's inventory variables (ansible:// hosts only), then
``--aidc-extra-vars FILE`` (like ``ansible-playbook -e @FILE``). GPU checks are marked ``gpu`` and
skip, with the reason, on hosts whose PCI bus has no NVIDIA GPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import StrictUndefined
from jinja2.nativetypes import NativeEnvironment
from nodecheck import installed_version, pci_devices

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
ROLES = ("common", "nvidia_driver", "fabric_manager", "efa", "nccl", "dcgm")


def pytest_addoption(parser):
    group = parser.getgroup("aidc node checks")
    group.addoption("--aidc-extra-vars", default=os.environ.get("AIDC_EXTRA_VARS"),
                    help="YAML file of variables overriding group_vars/defaults (like -e @FILE)")
    group.addoption("--aidc-instance-type", default=os.environ.get("AIDC_INSTANCE_TYPE"),
                    help="EC2 instance type of the host, for the catalog GPU/EFA count checks "
                         "(default: the inventory's aidc_instance_type on ansible:// hosts)")
    group.addoption("--aidc-python", default=os.environ.get("AIDC_PYTHON", "python3"),
                    help="Python with torch on the host, for the NCCL all-reduce check")


def pytest_collection_modifyitems(config, items):
    # Without --hosts testinfra would judge the machine running pytest; refuse rather than guess.
    if config.getoption("hosts", None):
        return
    skip = pytest.mark.skip(reason="node checks need --hosts=... (e.g. ssh://node, local://)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


def _to_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _os_vars(role: str, facts: dict[str, Any]) -> dict[str, Any]:
    """The role's vars/main.yml plus its first_found OS file, as the role loads them."""
    out: dict[str, Any] = {}
    vars_dir = ANSIBLE / "roles" / role / "vars"
    candidates = [f"{facts['distribution']}-{facts['distribution_major_version']}.yml",
                  f"{facts['os_family']}.yml"]
    if (vars_dir / "main.yml").exists():
        out.update(yaml.safe_load((vars_dir / "main.yml").read_text()) or {})
    for name in [*candidates, "unsupported.yml"]:
        if (vars_dir / name).exists():
            out.update(yaml.safe_load((vars_dir / name).read_text()) or {})
            break
    return out


def _render(variables: dict[str, Any]) -> dict[str, Any]:
    env = NativeEnvironment(undefined=StrictUndefined)
    env.filters["bool"] = _to_bool
    env.filters["regex_replace"] = lambda value, pattern, replacement="": re.sub(pattern, replacement, str(value))
    out = dict(variables)

    def render(value: Any, context: dict[str, Any]) -> Any:
        # Lists and dicts hold templates too (e.g. dcgm_packages names the CUDA major).
        if isinstance(value, list):
            return [render(v, context) for v in value]
        if isinstance(value, dict):
            return {k: render(v, context) for k, v in value.items()}
        if isinstance(value, str) and "{{" in value:
            return env.from_string(value).render(context)
        return value

    for _ in range(6):  # defaults refer to group_vars that refer to nothing deeper than a few levels
        pending = False
        for key, value in out.items():
            try:
                out[key] = render(value, out)
            except Exception:  # noqa: BLE001 (depends on a value rendered in a later pass)
                pending = True
        if not pending:
            break
    return out


def _facts(host) -> dict[str, Any]:
    info = host.system_info
    distribution = {"debian": "Debian", "ubuntu": "Ubuntu"}.get(info.distribution, info.distribution)
    return {"distribution": distribution, "distribution_major_version": str(info.release).split(".")[0],
            "os_family": "Debian" if distribution in ("Debian", "Ubuntu") else distribution,
            "architecture": info.arch}


@dataclass
class Expect:
    """Merged, rendered variables for one host plus the host facts they depend on."""

    vars: dict[str, Any]
    facts: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.vars[key]

    def flag(self, key: str) -> bool:
        return _to_bool(self.vars[key])

    @property
    def driver_flavour(self) -> str:
        source = self.vars["nvidia_driver_source"]
        return self.vars["_nvidia_driver_default_source"] if source == "auto" else source

    @property
    def driver_branch(self) -> str:
        key = "nvidia_driver_debian_branch" if self.driver_flavour == "debian" else "nvidia_driver_branch"
        return str(self.vars[key])

    @property
    def driver_package(self) -> str:
        """The package whose version is the driver's (what the role records and fabric manager matches)."""
        if self.driver_flavour == "debian":
            return "nvidia-driver"
        return str(self.vars["_nvidia_driver_cuda_package"]).strip()


@pytest.fixture(scope="module")
def expect(host, request) -> Expect:
    facts = _facts(host)
    merged: dict[str, Any] = {"ansible_facts": facts}
    for role in ROLES:
        merged.update(yaml.safe_load((ANSIBLE / "roles" / role / "defaults/main.yml").read_text()))
        merged.update(_os_vars(role, facts))
    merged.update(yaml.safe_load((ANSIBLE / "group_vars/all.yml").read_text()))
    if host.backend.NAME == "ansible":
        merged.update({k: v for k, v in host.ansible.get_variables().items() if not k.startswith("ansible_")})
    extra = request.config.getoption("--aidc-extra-vars")
    if extra:
        merged.update(yaml.safe_load(Path(extra).read_text()) or {})
    return Expect(vars=_render(merged), facts=facts)


@pytest.fixture(scope="module")
def instance_type_name(host, request) -> str | None:
    """The host's EC2 instance type: --aidc-instance-type, else the inventory's ``aidc_instance_type``
    (inventory/aws_ec2.yml sets it per node), else None (the catalog count checks then skip)."""
    name = request.config.getoption("--aidc-instance-type")
    if name or host.backend.NAME != "ansible":
        return name
    return host.ansible.get_variables().get("aidc_instance_type") or None


@pytest.fixture(scope="module")
def gpu_host(host, expect):
    """The host, when it has an NVIDIA GPU on its PCI bus; otherwise the GPU check skips, except on
    a host configured as a GPU node (driver installed, nvidia_driver_gpu_present true): there a GPU
    that fell off the bus must fail the checks, not skip them."""
    gpus = [d for d, cls in pci_devices(host) if d.startswith("0x10de:") and re.match(r"0x030[02]", cls)]
    # Some VMs (Firecracker with a passed-through GPU) may not mirror the device in sysfs: a driver
    # that lists a GPU is proof enough. A GPU on the bus with a broken driver still fails the checks.
    if not gpus and host.run("nvidia-smi -L").stdout.startswith("GPU "):
        return host
    if gpus:
        return host
    name = host.backend.get_pytest_id()
    driver = installed_version(host, expect.driver_package)
    if driver and expect.flag("nvidia_driver_gpu_present"):
        pytest.fail(
            f"{name} has the NVIDIA driver ({expect.driver_package} {driver}) and nvidia_driver_gpu_present "
            "is true, but no NVIDIA GPU on its PCI bus: a lost GPU (or set nvidia_driver_gpu_present: false "
            "for a node without one)"
        )
    pytest.skip(f"no NVIDIA GPU on the PCI bus of {name}: GPU checks need one")
