"""ansible/serve.yml deploys the inference server (engine builtin, tiny random model) as a systemd
service on one disposable host; the test queries it from this machine over the host's address.

What is NOT exercised here: the test host has no package index (no PyPI, no PyTorch wheel index),
so the playbook runs with ``serve_python_env`` pointing at this checkout's venv, bind-mounted
read-only into the host at the same path (with the interpreter it links to), and skips its own
venv + pip install steps. Everything else runs for real: service account, directories, the
environment file, the unit file, enable + start, the restart handler, the /health wait; then a
second run changes nothing, and a changed setting restarts the service through the handler.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.ansible_run import ANSIBLE, ansible_env, changed_tasks, failed_tasks

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

PLAYBOOK_TIMEOUT_S = 300
MODEL = "tiny-random"


def _deploy(bed, port: int, *extra: str) -> dict:
    host = bed.hosts[0]
    variables = {
        "serve_hosts": "testbed",
        "serve_python_env": sys.prefix,
        # The venv's editable install imports from the checkout: the unit must see both.
        "serve_python_env_paths": [sys.prefix, str(ANSIBLE.parent)],
        "serve_model": MODEL,
        "serve_host": host.address,  # reachable from the controller, not only loopback
        "serve_port": port,
        "serve_max_batch": 4,
        "serve_health_retries": 30,
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(bed.inventory_yml),
         str(ANSIBLE / "serve.yml"), "-e", json.dumps(variables), *extra],
        cwd=ANSIBLE, env=ansible_env(bed), capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT_S)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"serve.yml (rc {proc.returncode}) printed no JSON report:\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    journal = bed.ssh(host, "journalctl -u aidc-serve --no-pager | tail -30").stdout
    assert proc.returncode == 0, f"{failed_tasks(report)}\n{journal}"
    return report


def _main_pid(bed) -> str:
    return bed.ssh(bed.hosts[0], "systemctl show -p MainPID --value aidc-serve").stdout.strip()


def test_serve_yml_deploys_a_service_that_answers_the_openai_api(serve_host):
    bed, host = serve_host, serve_host.hosts[0]
    # The venv's interpreter lives under /root (pyenv); the service account must be able to reach it.
    assert bed.ssh(host, "chmod 0711 /root").returncode == 0
    port = random.randint(20000, 32767)  # the host's own network namespace: free there

    started = time.monotonic()
    first = _deploy(bed, port)
    deploy_s = time.monotonic() - started
    assert first["stats"][host.name]["changed"] > 0
    handler_ran = [t for p in first["plays"] for t in p["tasks"] if t["task"]["name"] == "Restart the inference server"]
    assert handler_ran and handler_ran[0]["hosts"][host.name].get("changed"), "the restart handler must run"

    state = bed.ssh(host, "systemctl is-active aidc-serve; systemctl is-enabled aidc-serve; "
                          "ps -o user= -p $(systemctl show -p MainPID --value aidc-serve)").stdout.split()
    assert state == ["active", "enabled", "aidc-serve"], state

    base = f"http://{host.address}:{port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/health").status_code == 200
        models = client.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == [MODEL], models
        reply = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 8,
                                                      "temperature": 0})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 8, body
        assert isinstance(body["choices"][0]["text"], str)

    pid = _main_pid(bed)
    second = _deploy(bed, port)
    assert second["stats"][host.name]["changed"] == 0, changed_tasks(second)
    assert _main_pid(bed) == pid, "an unchanged deploy must not restart the server"

    third = _deploy(bed, port, "-e", "serve_max_batch=2")
    assert set(changed_tasks(third)[host.name]) >= {"Install the systemd unit", "Restart the inference server"}
    assert _main_pid(bed) != pid
    assert "--max-batch 2" in bed.ssh(host, "systemctl show -p ExecStart aidc-serve").stdout
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200
    print(f"first deploy {deploy_s:.1f} s")
