"""Issue 7's serving goals, judged on serve_throughput.py's results (no torch: record.py uses it too)."""

from __future__ import annotations

from typing import Any


def goals(results: dict[str, Any], conc: list[int] | None = None) -> list[tuple[str, bool]]:
    """(goal, met) for every goal the results hold the numbers for; ``conc`` defaults to the engine's."""
    eng, hfs, mixed = results.get("engine", {}), results.get("hf_static_compile", {}), results.get("mixed", {})
    streams = conc or [int(c) for c in eng] or [0]
    top, out = str(max(streams)), []
    if top in eng:
        out.append((f"engine >= 60000 tok/s at {top} streams", eng[top]["output_tok_s"] >= 60000))
        out.append((f"engine p50 TPOT <= 2 ms at {top}", eng[top]["tpot_p50_ms"] <= 2.0))
        if top in hfs:
            out.append(("engine >= 3x HF static+compile", eng[top]["output_tok_s"] >= 3 * hfs[top]["output_tok_s"]))
    if "1" in eng:
        out.append(("engine >= 1000 tok/s single stream", eng["1"]["output_tok_s"] >= 1000))
    if {"continuous", "static"} <= set(mixed):
        c, s = mixed["continuous"], mixed["static"]
        out.append(("continuous beats static on throughput", c["output_tok_s"] > s["output_tok_s"]))
        out.append(("continuous beats static on p99 latency", c["latency_p99_s"] < s["latency_p99_s"]))
    return out
