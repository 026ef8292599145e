"""ansible/train.yml run for real by ansible-playbook, on two inventory hosts that both point at this
machine, with recording stand-ins for systemd-run/systemctl/journalctl on PATH (this CI machine has
no systemd). It checks what the playbook asks systemd to do on each host: the torchrun command line,
the environment, stop only when active, logs fetched per host. The real multi-host run on
disposable systemd hosts is a separate test (tests/testbed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "ansible" / "train.yml"

RECORDER = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["AIDC_SHIM_LOG"], "a") as fh:
    fh.write(json.dumps({{"cmd": name, "argv": sys.argv[1:]}}) + "\\n")
if name == "systemctl" and sys.argv[1] == "show":
    print("ActiveState=" + os.environ.get("AIDC_SHIM_STATE", "inactive"))
    print("SubState=running")
    print("Description=" + os.environ.get("AIDC_SHIM_DESCRIPTION", ""))
if name == "journalctl":
    print("2026-11-22T16:00:00+0000 host torchrun[1]: step 30/30 | loss 3.0031")
"""


@pytest.fixture
def shims(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("systemd-run", "systemctl", "journalctl"):
        path = bindir / name
        path.write_text(RECORDER.format(python=sys.executable))
        path.chmod(0o755)
    return bindir


def run_playbook(
    tmp_path: Path, shims: Path, *extra: str, state: str = "inactive", description: str = "", clusters=("", "")
) -> list[dict]:
    ansible = Path(sys.executable).with_name("ansible-playbook")
    if not ansible.exists():
        pytest.fail(f"{ansible} missing: install the 'ansible' extra (pyproject) into the venv")
    inventory = tmp_path / "hosts.yml"
    hosts = {"node-a": {"ansible_host": "10.0.0.1"}, "node-b": {"ansible_host": "10.0.0.2"}}
    for host_vars, cluster in zip(hosts.values(), clusters, strict=True):
        if cluster:  # as inventory/aws_ec2.yml composes it from the aidc:cluster tag
            host_vars["aidc_cluster"] = cluster
    inventory.write_text(
        json.dumps(
            {
                "pool_gpu": {
                    "hosts": hosts,
                    "vars": {
                        "ansible_connection": "local",
                        "ansible_become": False,
                        "ansible_python_interpreter": sys.executable,
                    },
                }
            }
        )
    )
    log = tmp_path / f"shim-{len(list(tmp_path.glob('shim-*')))}.jsonl"
    job = {
        "train_unit": "gpt-tiny",
        "train_nproc_per_node": 2,
        "train_args": ["--preset", "tiny", "--steps", "30"],
        "train_env": {"NCCL_DEBUG": "INFO", "AIDC_NOTE": 'say "$HOME" \\ `x`'},
        "train_env_dir": str(tmp_path / "env"),
        "train_workdir": str(tmp_path),
        "train_logs_dir": str(tmp_path / "logs"),
    }
    env = {
        **os.environ,
        "PATH": f"{shims}:{os.environ['PATH']}",
        "AIDC_SHIM_LOG": str(log),
        "AIDC_SHIM_STATE": state,
        "AIDC_SHIM_DESCRIPTION": description,
        "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
    }
    proc = subprocess.run(
        [
            str(ansible),
            "-i",
            str(inventory),
            str(PLAYBOOK),
            "-e",
            "train_hosts=pool_gpu",
            "-e",
            json.dumps(job),
            *extra,
        ],
        env=env,
        cwd=ROOT / "ansible",
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_start_runs_the_same_torchrun_unit_on_every_host(tmp_path, shims):
    calls = run_playbook(tmp_path, shims)
    runs = [c["argv"] for c in calls if c["cmd"] == "systemd-run"]
    assert len(runs) == 2, calls
    argv = runs[0]
    assert runs[0] == runs[1], "every node runs the identical command; c10d assigns ranks"
    assert "--unit=gpt-tiny" in argv and f"--working-directory={tmp_path}" in argv
    # The job's environment: a root-only file read after the nccl role's (later files win), not argv.
    assert not [a for a in argv if a.startswith("--setenv=NCCL") or a.startswith("--setenv=AIDC_NOTE")], argv
    env_file = tmp_path / "env" / "gpt-tiny.env"
    files = [a for a in argv if a.startswith("--property=EnvironmentFile=")]
    assert files == ["--property=EnvironmentFile=-/etc/aidc/nccl.env", f"--property=EnvironmentFile={env_file}"]
    assert env_file.read_text() == 'AIDC_NOTE="say \\"$HOME\\" \\\\ `x`"\nNCCL_DEBUG="INFO"\n'
    assert env_file.stat().st_mode & 0o777 == 0o600
    torchrun = argv[argv.index("--") + 1 :]
    assert torchrun == [
        f"{tmp_path}/.venv/bin/torchrun",
        "--nnodes=2",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.1:29500",
        "--rdzv-id=gpt-tiny",
        "--max-restarts=3",
        "-m",
        "workloads.train",
        "--preset",
        "tiny",
        "--steps",
        "30",
    ]


def _description(calls: list[dict]) -> str:
    argv = next(c["argv"] for c in calls if c["cmd"] == "systemd-run")
    return next(a for a in argv if a.startswith("--description=")).split("=", 1)[1]


def test_start_is_skipped_while_the_same_job_is_active(tmp_path, shims):
    description = _description(run_playbook(tmp_path, shims))
    assert description.startswith("aidc training job gpt-tiny ")
    calls = run_playbook(tmp_path, shims, state="active", description=description)
    assert not [c for c in calls if c["cmd"] == "systemd-run"]


def test_start_fails_while_the_unit_runs_another_job(tmp_path, shims):
    """Changed arguments must not be dropped silently because a unit of that name still runs."""
    description = _description(run_playbook(tmp_path, shims))
    with pytest.raises(AssertionError, match="already running with other arguments"):
        run_playbook(tmp_path, shims, "-e", '{"train_args": ["--preset", "tiny", "--steps", "60"]}',
                     state="active", description=description)


def test_start_refuses_hosts_of_two_clusters(tmp_path, shims):
    with pytest.raises(AssertionError, match="hosts must be of one cluster"):
        run_playbook(tmp_path, shims, clusters=("dev", "p5"))
    assert len([c for c in run_playbook(tmp_path, shims, clusters=("p5", "p5")) if c["cmd"] == "systemd-run"]) == 2


def test_stop_tag_stops_active_units_only(tmp_path, shims):
    calls = run_playbook(tmp_path, shims, "--tags", "stop", state="active")
    assert [c["argv"] for c in calls if c["cmd"] == "systemctl" and c["argv"][0] == "stop"] == [
        ["stop", "gpt-tiny.service"]
    ] * 2
    assert not [c for c in calls if c["cmd"] == "systemd-run"]
    idle = run_playbook(tmp_path, shims, "-e", "train_action=stop", state="inactive")
    assert not [c for c in idle if c["argv"][0] == "stop"]


def test_logs_are_collected_per_host(tmp_path, shims):
    run_playbook(tmp_path, shims, "--tags", "logs", state="inactive")
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["node-a.log", "node-b.log"]
    assert "loss 3.0031" in (tmp_path / "logs" / "node-a.log").read_text()


def test_start_without_nproc_fails_with_a_clear_message(tmp_path, shims):
    with pytest.raises(AssertionError, match="train_nproc_per_node=0"):
        run_playbook(tmp_path, shims, "-e", "train_nproc_per_node=0")
