"""The GPU session kit works end to end on CPU, so a session lent a GPU spends its minutes measuring.

session.sh runs each part with the benchmark's --smoke mode here; record.py renders what it left;
the benchmarks keep what they measured when one section or preset fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "benchmarks" / "gpu")]

import record  # noqa: E402
import serve_throughput  # noqa: E402
import train_mfu  # noqa: E402


def _session(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "AIDC_WHEELS": "", "AIDC_COMMIT": "c0ffee1"}
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu/session.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_session_parts_write_outputs_that_record_renders(tmp_path: Path) -> None:
    for part in ("serve", "train", "profile-serve"):
        proc = _session(tmp_path, part, "--smoke")
        assert proc.returncode == 0, (part, proc.stdout[-2000:], proc.stderr[-2000:])
    assert {"serve.json", "mfu.json", "profile-serve.txt", "env-serve.txt", "env-train.txt"} <= {
        p.name for p in tmp_path.iterdir()
    }
    serve = json.loads((tmp_path / "serve.json").read_text())
    assert serve["meta"]["commit"] == "c0ffee1" and "errors" not in serve
    mfu = json.loads((tmp_path / "mfu.json").read_text())
    assert mfu["commit"] == "c0ffee1" and mfu["results"][0]["preset"] == "tiny"
    text = record.render([tmp_path])
    assert "commit `c0ffee1`" in text
    tok_s = serve["engine"]["4"]["output_tok_s"]
    assert f"| engine | 4 | {tok_s:,.1f} |" in text
    assert "| continuous |" in text and "| static |" in text
    assert "| tiny | 0M | 4 | 64 |" in text
    assert "### profile-serve" in text and "ms/step" in text


def test_session_refuses_an_unknown_part(tmp_path: Path) -> None:
    proc = _session(tmp_path, "benchmark-everything")
    assert proc.returncode == 2 and "unknown part 'benchmark-everything'" in proc.stderr


def test_record_counts_junit_outcomes_and_keeps_reasons(tmp_path: Path) -> None:
    (tmp_path / "hosts.xml").write_text(
        """<testsuites><testsuite name="pytest">
        <testcase classname="tests.hosts.test_gpu" name="test_persistence_mode_on[local]" />
        <testcase classname="tests.hosts.test_gpu" name="test_persistenced_running[local]">
          <failure message="AssertionError: nvidia-persistenced is not running">trace</failure></testcase>
        <testcase classname="tests.hosts.test_common" name="test_time_sync_running[local]">
          <skipped message="container: the clock belongs to the machine" /></testcase>
        </testsuite></testsuites>"""
    )
    text = record.render([tmp_path])
    assert "`hosts.xml`: 1 failed, 1 passed, 1 skipped" in text
    assert "| `test_gpu::test_persistenced_running[local]` | failed | AssertionError: nvidia-persistenced" in text
    assert "| `test_common::test_time_sync_running[local]` | skipped | container: the clock" in text


def test_record_refuses_a_missing_folder(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        record.main([str(tmp_path / "nope")])
    assert exc.value.code == 2 and "not a folder" in capsys.readouterr().err


def test_mfu_goals_follow_the_issue() -> None:
    rows = [{"preset": "124m", "mfu": 0.485}, {"preset": "350m", "mfu": 0.549}, {"preset": "1.3b", "mfu": 0.6}]
    assert train_mfu.goals(rows) == {"124m MFU >= 48%": True, "350m MFU >= 55%": False}
    assert train_mfu.goals([{"preset": "350m", "mfu": None}]) == {}, "no peak known: no verdict"


def test_serve_benchmark_keeps_measured_sections_when_one_fails(tmp_path: Path, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("static cache unsupported by this transformers")

    monkeypatch.setattr(serve_throughput, "bench_hf", broken)
    out = tmp_path / "serve.json"
    results = serve_throughput.main(["--smoke", "--sections", "engine,hf_dynamic", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["errors"] == {"hf_dynamic": "RuntimeError: static cache unsupported by this transformers"}
    assert set(saved["engine"]) == {"1", "4"} and saved["engine"]["4"]["output_tok_s"] > 0
    assert "hf_dynamic" not in saved and results["errors"] == saved["errors"]


def test_train_benchmark_keeps_other_presets_when_one_fails(tmp_path: Path, monkeypatch) -> None:
    real = train_mfu.bench_one

    def one_fails(name, args, device):
        if name == "1.3b":
            raise RuntimeError("CUDA out of memory")
        return real(name, args, device)

    monkeypatch.setattr(train_mfu, "bench_one", one_fails)
    out = tmp_path / "mfu.json"
    assert train_mfu.main(["--smoke", "--presets", "tiny,1.3b", "--json", str(out)]) == 1
    saved = json.loads(out.read_text())
    assert [r["preset"] for r in saved["results"]] == ["tiny"]
    assert saved["errors"] == {"1.3b": "RuntimeError: CUDA out of memory"}


def _row(tok_s: float) -> dict[str, float]:
    return {"output_tok_s": tok_s, "ttft_p50_ms": 5.0, "ttft_p99_ms": 9.0, "tpot_p50_ms": 1.0, "tpot_p99_ms": 1.5}


def test_record_merges_a_separate_hf_static_run_and_judges_the_3x_goal(tmp_path: Path) -> None:
    serve_call, hf_call = tmp_path / "call1", tmp_path / "call2"
    serve_call.mkdir()
    hf_call.mkdir()
    meta = {"commit": "abc", "device": "NVIDIA H100 80GB HBM3"}
    serve = {"meta": meta, "engine": {"1": _row(1500), "64": _row(61000)}}
    (serve_call / "serve.json").write_text(json.dumps(serve))
    (hf_call / "serve-hf.json").write_text(json.dumps({"hf_static_compile": {"1": _row(340), "64": _row(21000)}}))
    text = record.render([serve_call, hf_call])
    assert "hf_static_compile rows from `serve-hf.json`" in text
    assert "| hf_static_compile | 64 | 21,000.0 |" in text
    assert "- MISSED: engine >= 3x HF static+compile" in text  # 61,000 < 3 x 21,000
    assert "- met: engine >= 60000 tok/s at 64 streams" in text
