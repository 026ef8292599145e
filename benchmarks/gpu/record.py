"""Turn what session.sh left under $OUT into a RESULTS.md section (device, commit, commands, numbers).

    .venv/bin/python benchmarks/gpu/record.py /work/.device/<call>/           # print markdown
    .venv/bin/python benchmarks/gpu/record.py DIR [DIR ...] --append benchmarks/RESULTS.md

Each DIR is one device call's files (the tool returns only the latest call's, so pass every
call's folder). Reads env-*.txt, check.xml / hosts.xml (pytest JUnit), serve.json, mfu.json and
profile-*.txt; what is absent is skipped, what failed is shown as failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: serve_goals

from serve_goals import goals  # noqa: E402

SERVE_COLS = ("output_tok_s", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms")
MIXED_COLS = ("output_tok_s", "latency_p50_s", "latency_p99_s", "ttft_p99_s")
COMMANDS = {
    "check": "bash benchmarks/gpu/session.sh check",
    "hosts": "bash benchmarks/gpu/session.sh hosts  (pytest tests/hosts --hosts=local://)",
    "serve": "bash benchmarks/gpu/session.sh serve  (python benchmarks/serve_throughput.py)",
    "mfu": "bash benchmarks/gpu/session.sh train  (python benchmarks/train_mfu.py --with-1.3b)",
}


def _num(v: Any, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def junit(path: Path) -> list[str]:
    """One table row per test case: outcome and, for failures/skips, the first line of the reason."""
    rows = ["| test | outcome | detail |", "|---|---|---|"]
    counts: dict[str, int] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag != "skipped" else "skipped"
                message = (node.get("message") or node.text or "").strip()
                detail = (message.splitlines() or [""])[0][:160]
                break
        counts[outcome] = counts.get(outcome, 0) + 1
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        rows.append(f"| `{name}` | {outcome} | {detail.replace('|', '/')} |")
    total = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    return [f"`{path.name}`: {total}", "", *rows]


def serve(data: dict[str, Any]) -> list[str]:
    out = ["| system | streams | " + " | ".join(SERVE_COLS) + " |", "|---|---:|" + "---:|" * len(SERVE_COLS)]
    for system in ("hf_dynamic", "hf_static_compile", "engine"):
        for streams, row in data.get(system, {}).items():
            out.append(f"| {system} | {streams} | " + " | ".join(_num(row[c]) for c in SERVE_COLS) + " |")
    if data.get("mixed"):
        out += ["", "| mixed workload | " + " | ".join(MIXED_COLS) + " |", "|---|" + "---:|" * len(MIXED_COLS)]
        for name, row in data["mixed"].items():
            out.append(f"| {name} | " + " | ".join(_num(row[c], 3) for c in MIXED_COLS) + " |")
    return out + _goals_and_errors(data)


def mfu(data: dict[str, Any]) -> list[str]:
    out = ["| preset | params | B | T | tok/s | ms/step | MFU | MFU no head | peak mem GiB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in data.get("results", []):
        pct = [_num(100 * r[k]) + " %" if r[k] is not None else "n/a" for k in ("mfu", "mfu_no_head")]
        out.append(
            f"| {r['preset']} | {r['params'] / 1e6:.0f}M | {r['batch_size']} | {r['seq_len']} | "
            f"{_num(r['tokens_per_s'], 0)} | {_num(r['step_ms'])} | {pct[0]} | {pct[1]} | {_num(r['peak_mem_gib'])} |"
        )
    knobs = ", ".join(f"{k}={data.get(k)}" for k in ("compile", "compile_mode", "loss_chunks", "sdpa", "steps"))
    return [*out, "", f"settings: {knobs}", *_goals_and_errors(data)]


def _goals_and_errors(data: dict[str, Any]) -> list[str]:
    out = [f"- {'met' if ok else 'MISSED'}: {text}" for text, ok in data.get("goals", {}).items()]
    out += [f"- FAILED {name}: `{error.splitlines()[0][:200]}`" for name, error in data.get("errors", {}).items()]
    return ["", *out] if out else []


def _with_hf_rerun(data: dict[str, Any], dirs: list[Path]) -> tuple[dict[str, Any], list[str]]:
    """serve.json, with HF static+compile from serve-hf.json (session.sh serve-hf) when that ran."""
    rerun = next((d / "serve-hf.json" for d in dirs if (d / "serve-hf.json").exists()), None)
    if rerun is None or "hf_static_compile" in data:
        return data, []
    hf = json.loads(rerun.read_text()).get("hf_static_compile")
    if not hf:
        return data, []
    merged = {**data, "hf_static_compile": hf}
    merged["goals"] = dict(goals(merged))
    return merged, [f"hf_static_compile rows from `{rerun.name}` (a separate call on the same machine).", ""]


def provenance(dirs: list[Path]) -> list[str]:
    lines = []
    for env in sorted(p for d in dirs for p in d.glob("env-*.txt")):
        text = env.read_text().splitlines()
        head = text[0] if text else ""
        gpu = next((line for line in text if line.startswith("python ")), "")
        lines.append(f"- {env.stem}: {head}; {gpu}")
    return lines


def _at(data: dict[str, Any]) -> str:
    """' at <commit>': one RESULTS section may gather calls made at different commits."""
    commit = data.get("meta", data).get("commit")  # serve.json nests it under meta, mfu.json does not
    return f" at `{commit[:7]}`" if commit else ""


def render(dirs: list[Path]) -> str:
    meta = next(
        (json.loads(p.read_text()) for name in ("mfu.json", "serve.json") for d in dirs if (p := d / name).exists()),
        {},
    )
    meta = meta.get("meta", meta)
    title = f"## GPU run {meta.get('time', '')[:10]}: {meta.get('device', 'unknown device')}"
    out = [title, "", f"commit `{meta.get('commit', 'unknown')}`, torch {meta.get('torch', '?')}", *provenance(dirs)]
    for d in dirs:
        for name in ("check.xml", "hosts.xml"):
            if (d / name).exists():
                out += ["", f"### {name[:-4]}: `{COMMANDS[name[:-4]]}`", "", *junit(d / name)]
        if (d / "serve.json").exists():
            data, note = _with_hf_rerun(json.loads((d / "serve.json").read_text()), dirs)
            out += ["", f"### serve: `{COMMANDS['serve']}`{_at(data)}", "", *note, *serve(data)]
        if (d / "mfu.json").exists():
            data = json.loads((d / "mfu.json").read_text())
            out += ["", f"### mfu: `{COMMANDS['mfu']}`{_at(data)}", "", *mfu(data)]
        for prof in sorted(d.glob("profile-*.txt")):
            summary = prof.read_text().split("\n\n")[0]
            out += ["", f"### {prof.stem}", "", "```", summary, "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="folders holding one device call's output files")
    p.add_argument("--append", type=Path, help="append the section to this file (e.g. benchmarks/RESULTS.md)")
    a = p.parse_args(argv)
    missing = [str(d) for d in a.dirs if not d.is_dir()]
    if missing:
        p.error(f"not a folder: {', '.join(missing)}")
    text = render(a.dirs)
    if a.append:
        with a.append.open("a") as f:
            f.write("\n" + text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
