"""The training benchmarks run end to end on CPU: MFU in --smoke mode, 2-rank gloo scaling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def test_train_mfu_smoke_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "mfu.json"
    proc = _run("train_mfu.py", "--smoke", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tok/s" in proc.stdout and "tiny" in proc.stdout
    result = json.loads(out.read_text())
    (row,) = result["results"]
    assert row["preset"] == "tiny" and row["tokens_per_s"] > 0 and row["seq_len"] == 64
    assert row["mfu"] is None, "no CPU peak exists: MFU must not be made up"
    assert 4.0 < row["final_loss"] < 6.0


def test_train_mfu_rejects_unknown_preset():
    proc = _run("train_mfu.py", "--presets", "7b")
    assert proc.returncode == 2 and "unknown ['7b']" in proc.stderr


@pytest.mark.slow
def test_cpu_scaling_benchmark_measures_both_sizes(tmp_path):
    out = tmp_path / "scaling.json"
    proc = _run("train_scaling_cpu.py", "--steps", "6", "--skip", "2", "--batch-size", "4", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["ranks"] for r in result["runs"]] == [1, 2]
    assert all(r["tokens_per_s"] > 0 and r["steps_timed"] == 4 for r in result["runs"])
    assert result["efficiency"] == pytest.approx(
        result["runs"][1]["tokens_per_s"] / (2 * result["runs"][0]["tokens_per_s"])
    )
    assert "scaling efficiency" in proc.stdout
