"""2-rank gloo training under torchrun: DDP and FSDP2 learn; kill -9 of a worker and a crash in the
middle of a checkpoint write both resume to losses bit-identical to an uninterrupted run; checkpoint
work that outlasts the short start-up timeout does not kill the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.train.checkpoint import LocalStore, step_name
from workloads.train.local import run_local
from workloads.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
STEPS = 30
CKPT_EVERY = 10
# Short gloo timeout: restarted workers retry connectFullMesh quickly (FACTS.md "Restarts").
ENV = {"AIDC_DIST_TIMEOUT_S": "30"}


def train_args(parallel: str, metrics: Path, *extra: str) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--steps",
        str(STEPS),
        "--lr",
        "3e-3",
        "--warmup",
        "5",
        "--seed",
        "7",
        "--parallel",
        parallel,
        "--deterministic",
        "--log-every",
        "10",
        "--metrics",
        str(metrics),
        *extra,
    ]


def run(parallel: str, metrics: Path, *extra: str, env: dict[str, str] | None = None, restarts: int = 0):
    proc = run_local(
        2, train_args(parallel, metrics, *extra), env={**ENV, **(env or {})}, max_restarts=restarts, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    return read_metrics(metrics), proc.stdout


def _baseline(parallel: str, tmp_path_factory):
    metrics = tmp_path_factory.mktemp(f"base-{parallel}") / "metrics.jsonl"
    (steps, events), _ = run(parallel, metrics)
    return parallel, steps, events


@pytest.fixture(scope="module")
def baseline_ddp(tmp_path_factory):
    """An uninterrupted run; its losses are the reference for the resume tests."""
    return _baseline("ddp", tmp_path_factory)


@pytest.fixture(scope="module")
def baseline_fsdp(tmp_path_factory):
    return _baseline("fsdp", tmp_path_factory)


@pytest.fixture(params=["ddp", "fsdp"])
def baseline(request):
    return request.getfixturevalue(f"baseline_{request.param}")


def losses_hex(steps: dict[int, dict]) -> list[str]:
    return [steps[s]["loss_hex"] for s in range(1, STEPS + 1)]


def test_two_ranks_learn(baseline):
    parallel, steps, events = baseline
    assert sorted(steps) == list(range(1, STEPS + 1)) and events == []
    first, last = steps[1]["loss"], steps[STEPS]["loss"]
    assert first > 5.0, "tiny starts near ln(256) = 5.55"
    assert last < first - 1.5, f"{parallel}: loss {first:.3f} -> {last:.3f} did not fall"
    assert all(steps[s]["tokens_per_s"] > 0 and steps[s]["mem_gib"] > 0 for s in steps)


@pytest.mark.slow
def test_kill9_of_one_worker_resumes_bit_identically(baseline, tmp_path):
    parallel, ref, _ = baseline
    ckpt = tmp_path / "ckpt"
    (steps, events), out = run(
        parallel,
        tmp_path / "metrics.jsonl",
        "--ckpt-dir",
        str(ckpt),
        "--ckpt-every",
        str(CKPT_EVERY),
        env={"AIDC_FAULT_AT_STEP": "17", "AIDC_FAULT_RANK": "1"},
        restarts=5,
    )
    assert "SIGKILL at step 17" in out and "exitcode: -9" in out, out[-3000:]
    assert [e["from_step"] for e in events if e["event"] == "resume"] == [10], out[-6000:]
    assert losses_hex(steps) == losses_hex(ref)
    assert LocalStore(str(ckpt)).valid_steps() == [10, 20, 30]


@pytest.mark.slow
def test_crash_during_checkpoint_write_resumes_from_previous(baseline_ddp, tmp_path):
    parallel, ref, _ = baseline_ddp
    ckpt = tmp_path / "ckpt"
    (steps, events), out = run(
        parallel,
        tmp_path / "metrics.jsonl",
        "--ckpt-dir",
        str(ckpt),
        "--ckpt-every",
        str(CKPT_EVERY),
        "--keep-last",
        "2",
        env={"AIDC_FAULT_IN_SAVE_AT_STEP": "20", "AIDC_FAULT_RANK": "0"},
        restarts=5,
    )
    assert "SIGKILL at step 20 (AIDC_FAULT_IN_SAVE_AT_STEP)" in out, out[-3000:]
    # Step 20's data was on disk without its marker: the restart must have ignored it.
    assert [e["from_step"] for e in events if e["event"] == "resume"] == [10], out[-6000:]
    assert losses_hex(steps) == losses_hex(ref)
    assert LocalStore(str(ckpt)).valid_steps() == [20, 30]
    assert sorted(p.name for p in ckpt.iterdir()) == [step_name(20), step_name(30)]


def test_checkpoint_work_longer_than_the_dist_timeout_completes(tmp_path):
    """Rank 0 lists checkpoints alone, for longer than AIDC_DIST_TIMEOUT_S, while rank 1 waits for it:
    before resuming and when pruning after the save. Both waits must survive."""
    timeout_s, stall_s = 4, 7
    ckpt = tmp_path / "ckpt"
    args = ["--preset", "tiny", "--steps", "2", "--seq-len", "16", "--batch-size", "2", "--ckpt-dir", str(ckpt)]
    proc = run_local(
        2,
        [*args, "--ckpt-every", "2"],
        env={"AIDC_DIST_TIMEOUT_S": str(timeout_s), "AIDC_TEST_STALL_S": str(stall_s)},
        module="tests.integration.train_slow_checkpoint",
        cwd=str(REPO),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "step      2/2" in proc.stdout
    assert LocalStore(str(ckpt)).valid_steps() == [2]
