"""Run site.yml against test hosts and read Ansible's JSON report (ansible.posix.json callback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.testbed import Testbed

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
PLAYBOOK_TIMEOUT_S = 600


def ansible_env(bed: Testbed, callback: str = "ansible.posix.json") -> dict[str, str]:
    control = bed.workdir / "cp"  # short path: ssh's ControlPath has a 108-byte limit
    control.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
        "ANSIBLE_STDOUT_CALLBACK": callback,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }


def playbook_command(bed: Testbed) -> list[str]:
    return [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(bed.inventory_yml),
            str(ANSIBLE / "site.yml")]


def converge(bed: Testbed, *args: str) -> dict:
    """Run site.yml once with the JSON callback; return Ansible's parsed JSON report."""
    proc = subprocess.run([*playbook_command(bed), *args], cwd=ANSIBLE, env=ansible_env(bed), capture_output=True,
                          text=True, timeout=PLAYBOOK_TIMEOUT_S)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook (rc {proc.returncode}) printed no JSON report:\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report["rc"] = proc.returncode
    return report


def changed_tasks(report: dict) -> dict[str, list[str]]:
    """Host -> names of the tasks that reported a change (for failure messages)."""
    out: dict[str, list[str]] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("changed"):
                    out.setdefault(host, []).append(task["task"]["name"])
    return out


def failed_tasks(report: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed") or result.get("unreachable"):
                    out.setdefault(host, []).append(f"{task['task']['name']}: {result.get('msg', '')}")
    return out
