"""The serving benchmark's --smoke mode runs end to end on CPU and writes a complete JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_throughput_smoke_writes_all_sections(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/serve_throughput.py"), "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    for section in ("hf_dynamic", "hf_static_compile", "engine"):
        assert set(data[section]) == {"1", "4"}
        assert all(
            row["output_tok_s"] > 0 and row["tpot_p99_ms"] >= row["tpot_p50_ms"] for row in data[section].values()
        )
    assert set(data["mixed"]) == {"continuous", "static"}
    assert data["meta"]["model"] == "tiny-random" and "engine" in proc.stdout
