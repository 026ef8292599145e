"""The training CLI end to end in one process: checkpoint directory checks, resume with another
model or more steps, a finished job; tokenize output directories."""

from __future__ import annotations

import pytest

from workloads.train.__main__ import main
from workloads.train.config import TrainConfig
from workloads.train.metrics import read_metrics
from workloads.train.tokenize import main as tokenize_main
from workloads.train.trainer import lr_factor

# Small and quick: the tiny preset, short sequences, a few steps.
BASE = ["--preset", "tiny", "--seq-len", "16", "--batch-size", "2", "--log-every", "1", "--lr", "1e-3"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([*BASE, *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("sub", ["", "/sub"])
def test_ckpt_dir_that_is_a_file_fails_before_training(tmp_path, capsys, sub):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    metrics = tmp_path / "m.jsonl"
    rc, _, err = run_cli(
        capsys, "--steps", "3", "--ckpt-dir", f"{afile}{sub}", "--ckpt-every", "1", "--metrics", str(metrics)
    )
    assert rc == 2
    where = "" if not sub else f" {afile}"
    assert err.strip().splitlines() == [f"error: --ckpt-dir {afile}{sub}:{where} is a file, not a directory"]
    assert not metrics.exists(), "no training step may run"


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--lr", "inf", "must be a finite number > 0"),
        ("--lr", "nan", "must be a finite number > 0"),
        ("--weight-decay", "-0.1", "must be a finite number >= 0"),
        ("--weight-decay", "inf", "must be a finite number >= 0"),
    ],
)
def test_non_finite_lr_and_negative_weight_decay_are_refused(capsys, flag, value, allowed):
    rc, _, err = run_cli(capsys, "--steps", "1", flag, value)
    assert rc == 2
    assert err.strip().splitlines() == [f"error: {flag} {float(value)} is invalid: {allowed}"]


@pytest.mark.parametrize("sub", ["m.jsonl", "sub/m.jsonl"])
def test_metrics_path_that_cannot_be_written_is_one_error_line(tmp_path, capsys, sub):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    rc, _, err = run_cli(capsys, "--steps", "1", "--metrics", f"{afile}/{sub}")
    assert rc == 2
    in_the_way = afile if sub == "m.jsonl" else afile / "sub"
    assert err.strip().splitlines() == [
        f"error: --metrics {afile}/{sub} is invalid: cannot be written (Not a directory: {in_the_way})"
    ]


def test_resume_with_another_preset_names_the_checkpoint_and_the_mismatch(tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt")
    assert run_cli(capsys, "--steps", "2", "--ckpt-dir", ckpt, "--ckpt-every", "2")[0] == 0
    rc, _, err = run_cli(capsys, "--preset", "124m", "--steps", "4", "--ckpt-dir", ckpt, "--ckpt-every", "2")
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {ckpt}/step_00000002 was saved by another model")
    assert "--preset tiny; this run: --preset 124m" in lines[0] and "d_model 64 -> 768" in lines[0]


def _lrs_and_losses(path) -> tuple[dict[int, float], dict[int, str]]:
    steps, _ = read_metrics(path)
    return {s: r["lr"] for s, r in steps.items()}, {s: r["loss_hex"] for s, r in steps.items()}


def test_resume_with_more_steps_follows_the_new_schedule_from_its_first_step(tmp_path, capsys):
    ckpt, metrics = str(tmp_path / "ckpt"), tmp_path / "m.jsonl"
    common = ["--warmup", "1", "--ckpt-dir", ckpt, "--ckpt-every", "4", "--metrics", str(metrics)]
    assert run_cli(capsys, "--steps", "4", *common)[0] == 0
    assert run_cli(capsys, "--steps", "8", *common)[0] == 0
    lrs, _ = _lrs_and_losses(metrics)
    new = TrainConfig(steps=8, warmup=1, lr=1e-3)
    # The 4-step schedule would give step 5 its floor, 1e-4, and jump up at step 6.
    assert [lrs[s] for s in range(5, 9)] == [1e-3 * lr_factor(s - 1, new) for s in range(5, 9)]
    assert lrs[5] > lrs[6] > lrs[7] > lrs[8]


def test_unchanged_config_resumes_bit_identically(tmp_path, capsys):
    whole, parts = tmp_path / "whole.jsonl", tmp_path / "parts.jsonl"
    assert run_cli(capsys, "--steps", "6", "--warmup", "2", "--metrics", str(whole))[0] == 0
    common = ["--steps", "6", "--warmup", "2", "--ckpt-dir", str(tmp_path / "ckpt"), "--metrics", str(parts)]
    assert run_cli(capsys, *common, "--ckpt-every", "3")[0] == 0
    (tmp_path / "ckpt" / "step_00000006").rename(tmp_path / "ckpt" / "old_00000006")  # resume from step 3
    assert run_cli(capsys, *common, "--ckpt-every", "3")[0] == 0
    assert _lrs_and_losses(parts) == _lrs_and_losses(whole)


def test_rerunning_a_finished_job_says_so(tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt")
    assert run_cli(capsys, "--steps", "2", "--ckpt-dir", ckpt, "--ckpt-every", "2")[0] == 0
    rc, out, _ = run_cli(capsys, "--steps", "2", "--ckpt-dir", ckpt, "--ckpt-every", "2")
    assert rc == 0 and "already complete at step 2 (--steps 2); nothing to do" in out
    rc, out, _ = run_cli(capsys, "--steps", "1", "--warmup", "1", "--ckpt-dir", ckpt, "--ckpt-every", "1")
    assert rc == 0 and "already past --steps 1: the newest checkpoint is at step 2; nothing to do" in out


def test_last_step_is_saved_when_steps_is_no_multiple_of_ckpt_every(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert run_cli(capsys, "--steps", "5", "--ckpt-dir", str(ckpt), "--ckpt-every", "2")[0] == 0
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("step_")) == [
        "step_00000002", "step_00000004", "step_00000005"]
    rc, out, _ = run_cli(capsys, "--steps", "5", "--ckpt-dir", str(ckpt), "--ckpt-every", "2")
    assert rc == 0 and "already complete at step 5 (--steps 5); nothing to do" in out


def test_resume_with_another_batch_size_names_the_flag(tmp_path, capsys):
    """The data position counts batches: under another batch size it would skip or repeat samples."""
    ckpt = str(tmp_path / "ckpt")
    assert run_cli(capsys, "--steps", "2", "--ckpt-dir", ckpt, "--ckpt-every", "2")[0] == 0
    rc, _, err = run_cli(capsys, "--steps", "4", "--batch-size", "4", "--ckpt-dir", ckpt, "--ckpt-every", "2")
    assert rc == 2
    assert err.strip().splitlines() == [
        "error: checkpoint data position was saved with batch_size=2, now 4: resume with the same --batch-size, "
        "or start a new --ckpt-dir"
    ]


def test_tokenize_creates_the_output_directory(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("hello", encoding="utf-8")
    out = tmp_path / "data" / "sub" / "c.bin"
    assert tokenize_main([str(text), str(out)]) == 0
    assert out.is_file() and "5 tokens" in capsys.readouterr().out


def test_tokenize_output_under_a_file_is_one_error_line(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("hello", encoding="utf-8")
    assert tokenize_main([str(text), str(text / "c.bin")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: output '{text}/c.bin' cannot be written")
