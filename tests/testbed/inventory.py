"""Ansible inventories (INI and YAML) for the test hosts, usable by ansible-playbook and testinfra."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from tests.testbed.bed import Testbed

GROUP = "testbed"


def connection_vars(bed: Testbed) -> dict[str, str]:
    return {
        "ansible_user": "root",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(bed.key),
        # Disposable hosts get fresh host keys on every boot: never record them.
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }


def write_inventories(bed: Testbed, host_vars: Mapping[int, Mapping[str, object]]) -> None:
    """Write ``inventory.yml`` (all variables) and ``inventory.ini`` (scalar variables only).

    ``host_vars`` maps a host's index (0-based) to extra variables, e.g. role overrides that the
    integration test gives one host and not the other.
    """
    hosts = {}
    ini_lines = [f"[{GROUP}]"]
    for i, host in enumerate(bed.hosts):
        extra = dict(host_vars.get(i, {}))
        hosts[host.name] = {"ansible_host": host.address, **extra}
        scalars = " ".join(f"{k}={json.dumps(v)}" for k, v in extra.items() if isinstance(v, str | int | bool))
        ini_lines.append(f"{host.name} ansible_host={host.address} {scalars}".rstrip())
    conn = connection_vars(bed)
    ini_lines += ["", f"[{GROUP}:vars]", *(f"{k}='{v}'" for k, v in conn.items())]
    bed.inventory_ini.write_text("\n".join(ini_lines) + "\n")
    doc = {"all": {"children": {GROUP: {"hosts": hosts, "vars": conn}}}}
    bed.inventory_yml.write_text(yaml.safe_dump(doc, sort_keys=False))
