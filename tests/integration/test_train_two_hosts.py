"""One training job on two disposable hosts, started, logged and stopped through ansible/train.yml.

Real systemd-run inside each host, real torchrun c10d rendezvous on the first host's address, gloo
between the hosts over their shared bridge (tests/testbed ``network="bridge"``), nnodes=2 and one
CPU worker per host, preset ``tiny``. The hosts run this checkout's venv, bind-mounted read-only at
the same paths (train_torchrun, train_workdir); checkpoints go to a directory both hosts mount
read-write, standing in for the cluster's FSx (DCP writes one shard per rank beside rank 0's
metadata, so every rank needs the same directory).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.ansible_run import ANSIBLE, ansible_env, changed_tasks, failed_tasks
from tests.integration.conftest import SHARED_MOUNT, shared_dir_of

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STEPS = 30
CKPT_EVERY = 15
#: Rank 0 writes it on its own host; the logs mode fetches it from whichever host that is.
METRICS = "/var/lib/aidc-train/metrics.jsonl"
PLAYBOOK_TIMEOUT_S = 180
JOB_TIMEOUT_S = 180


def _job(bed, tmp_path: Path, unit: str, steps: int) -> Path:
    job = {
        "train_hosts": "testbed",
        "train_unit": unit,
        "train_nproc_per_node": 1,
        "train_workdir": str(REPO),
        "train_torchrun": str(Path(sys.executable).parent / "torchrun"),
        # Not a fixed well-known port; each host has its own network namespace, so it is free there.
        "train_rdzv_port": random.randint(20000, 32767),
        "train_max_restarts": 0,
        "train_args": ["--preset", "tiny", "--steps", str(steps), "--seed", "7", "--log-every", "5",
                       "--ckpt-dir", f"{SHARED_MOUNT}/{unit}", "--ckpt-every", str(CKPT_EVERY),
                       "--metrics", METRICS],
        # Two hosts share this machine's 2 cores: one thread per worker avoids oversubscription.
        "train_env": {"OMP_NUM_THREADS": "1"},
        "train_logs_dir": str(tmp_path / "logs"),
        "train_metrics_file": METRICS,
    }
    path = tmp_path / f"{unit}.json"
    path.write_text(json.dumps(job))
    return path


def _playbook(bed, job: Path, *args: str) -> dict:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(bed.inventory_yml),
         str(ANSIBLE / "train.yml"), "-e", f"@{job}", *args],
        cwd=ANSIBLE, env=ansible_env(bed), capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT_S)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"train.yml (rc {proc.returncode}) printed no JSON report:\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    assert proc.returncode == 0, failed_tasks(report)
    return report


def _unit_state(bed, host, unit: str) -> str:
    return bed.ssh(host, f"systemctl is-active {unit}.service", 30).stdout.strip()


def _wait_all(bed, unit: str, done, what: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, str]:
    """Poll every host's unit state (bounded) until ``done(states)``; fail with the states seen."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {h.name: _unit_state(bed, h, unit) for h in bed.hosts}
        if done(states):
            return states
        time.sleep(2)
    journals = {h.name: bed.ssh(h, f"journalctl -u {unit}.service --no-pager | tail -20").stdout
                for h in bed.hosts}
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}: {states}\n{journals}")


def _wait_training(bed, unit: str, timeout: float = JOB_TIMEOUT_S) -> None:
    """Bounded wait until rank 0 (on either host) prints a progress line: rendezvous is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("step " in bed.ssh(h, f"journalctl -u {unit}.service --no-pager -o cat").stdout for h in bed.hosts):
            return
        time.sleep(2)
    pytest.fail(f"no progress line from {unit} on any host within {timeout:.0f} s")


def _step_records(path: Path) -> dict[int, dict]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in records if "step" in r and "loss" in r}


def test_two_hosts_train_one_job_to_the_end(workload_hosts, tmp_path):
    bed, unit = workload_hosts, "aidc-train-it"
    job = _job(bed, tmp_path, unit, STEPS)
    started = time.monotonic()
    report = _playbook(bed, job)
    starts = {h: [t for t in names if "Start torchrun" in t] for h, names in changed_tasks(report).items()}
    assert starts == {h.name: ["Start torchrun as a transient systemd unit"] for h in bed.hosts}, starts
    # The job's environment goes to the unit through a root-only file (not argv, not `systemctl show`).
    for host in bed.hosts:
        env_file = f"/run/aidc/{unit}.env"
        shown = bed.ssh(host, f"stat -c %a {env_file} && cat {env_file}").stdout.split()
        assert shown == ["600", 'OMP_NUM_THREADS="1"'], shown

    _wait_all(bed, unit, lambda s: all(v in ("inactive", "failed") for v in s.values()), "the job to end")
    elapsed = time.monotonic() - started
    _playbook(bed, job, "--tags", "logs")

    logs = tmp_path / "logs"
    for host in bed.hosts:
        journal = (logs / f"{host.name}.log").read_text()
        assert f"{unit}.service: Deactivated successfully" in journal, journal[-3000:]
        assert "Failed with result" not in journal, journal[-3000:]
    metrics = sorted(logs.glob("*.metrics.jsonl"))
    assert len(metrics) == 1, f"exactly one host holds rank 0's metrics: {metrics}"
    rank0_host = metrics[0].name.removesuffix(".metrics.jsonl")
    assert f"step {STEPS:>6}/{STEPS}" in (logs / f"{rank0_host}.log").read_text()

    steps = _step_records(metrics[0])
    assert sorted(steps) == list(range(1, STEPS + 1)), sorted(steps)
    losses = [steps[i]["loss"] for i in range(1, STEPS + 1)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, f"loss did not fall: {losses}"

    # Both ranks wrote their DCP shard into the shared directory: the job spanned both hosts.
    final = shared_dir_of(bed.workdir) / unit / f"step_{STEPS:08d}"
    assert sorted(p.name for p in final.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert (final / "COMPLETE.json").exists()
    print(f"two-host job of {STEPS} steps: {elapsed:.1f} s from start to both units inactive")


def test_stop_ends_the_job_on_every_host(workload_hosts, tmp_path):
    bed, unit = workload_hosts, "aidc-train-stop"
    job = _job(bed, tmp_path, unit, 1_000_000)  # runs until stopped
    _playbook(bed, job)
    _wait_all(bed, unit, lambda s: all(v == "active" for v in s.values()), "the job to run", 60)
    _wait_training(bed, unit)
    first = bed.hosts[0].address
    for host in bed.hosts:
        exec_start = bed.ssh(host, f"systemctl show -p ExecStart {unit}.service").stdout
        assert f"--rdzv-endpoint={first}:" in exec_start and "--nnodes=2" in exec_start, exec_start

    report = _playbook(bed, job, "--tags", "stop")
    assert {h: s["changed"] for h, s in report["stats"].items()} == {h.name: 1 for h in bed.hosts}
    states = {h.name: _unit_state(bed, h, unit) for h in bed.hosts}
    assert all(v in ("inactive", "failed") for v in states.values()), states
    for host in bed.hosts:
        # "[t]" keeps the pattern from matching the command line of the shell that runs pgrep.
        left = bed.ssh(host, "pgrep -af '[t]orchrun|[w]orkloads.train'").stdout.strip()
        assert not left, f"{host.name} still runs: {left}"
        listed = bed.ssh(host, "systemctl list-units --state=active --no-legend 'aidc-train*'").stdout.strip()
        assert not listed, listed
    again = _playbook(bed, job, "--tags", "stop")
    assert all(s["changed"] == 0 for s in again["stats"].values()), again["stats"]
