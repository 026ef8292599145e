"""2-rank gloo scaling efficiency of the trainer on CPU, against 1 rank (weak scaling).

    python benchmarks/train_scaling_cpu.py --json benchmarks/train_scaling_cpu.json   # ~1 min

Each configuration runs under torchrun on loopback with one intra-op thread per rank and the same
per-rank batch; throughput is the median tokens/s of the steps after ``--skip`` warm-up steps.
Efficiency = tokens/s(2 ranks) / (2 x tokens/s(1 rank)); the goal is >= 80%. A machine with fewer
free cores than ranks, or busy with other work, measures contention, not the trainer: the table
prints the core count and load average so readers can judge.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from workloads.train.local import run_local  # noqa: E402
from workloads.train.metrics import read_metrics  # noqa: E402

GOAL = 0.80


def measure(nproc: int, args: argparse.Namespace, workdir: Path) -> dict:
    metrics = workdir / f"metrics_{nproc}.jsonl"
    train_args = [
        "--preset",
        args.preset,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--parallel",
        args.parallel,
        "--log-every",
        str(args.steps),
        "--metrics",
        str(metrics),
    ]
    proc = run_local(nproc, train_args, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{nproc}-rank run failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    steps, _ = read_metrics(metrics)
    timed = [steps[s]["tokens_per_s"] for s in sorted(steps) if s > args.skip]
    if not timed:
        raise RuntimeError(f"no steps after --skip {args.skip}; raise --steps")
    return {"ranks": nproc, "tokens_per_s": statistics.median(timed), "steps_timed": len(timed)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--parallel", choices=("ddp", "fsdp"), default="ddp")
    p.add_argument("--batch-size", type=int, default=32, help="per-rank micro batch")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--skip", type=int, default=10, help="warm-up steps left out of the median")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run")
    p.add_argument("--json", type=Path, help="write results here")
    args = p.parse_args(argv)
    if args.skip >= args.steps:
        p.error(f"--skip {args.skip} must be < --steps {args.steps}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aidc-scaling-") as tmp:
        one, two = measure(1, args, Path(tmp)), measure(2, args, Path(tmp))
    efficiency = two["tokens_per_s"] / (2 * one["tokens_per_s"])
    load = os.getloadavg()[0]
    print(f"{'ranks':>5} {'tokens/s':>10} {'per rank':>10}")
    for r in (one, two):
        print(f"{r['ranks']:>5} {r['tokens_per_s']:>10.0f} {r['tokens_per_s'] / r['ranks']:>10.0f}")
    verdict = "meets" if efficiency >= GOAL else "below"
    print(
        f"scaling efficiency {100 * efficiency:.1f}% ({verdict} the {100 * GOAL:.0f}% goal); "
        f"{os.cpu_count()} cores, load average {load:.1f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "preset": args.preset,
                    "parallel": args.parallel,
                    "batch_size": args.batch_size,
                    "steps": args.steps,
                    "skip": args.skip,
                    "runs": [one, two],
                    "efficiency": efficiency,
                    "goal": GOAL,
                    "cpu_count": os.cpu_count(),
                    "load_average_1m": load,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=1,
            )
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
