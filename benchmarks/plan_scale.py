"""How long the offline evaluation of the real program takes as a p5 pool grows.

    .venv/bin/python benchmarks/plan_scale.py [--nodes 1 8 64] [--repeat 3] [--json out/plan_scale.json]

Goal (issue 3): < 5 s at 64 p5.48xlarge nodes, roughly linear in the node count. Each size is
evaluated ``--repeat`` times in this process (Pulumi's mock runtime, no cloud calls); the table
shows the best and the median wall time and the time per node above the 1-node baseline.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from runinfo import run_info, write_json  # benchmarks/, first on sys.path

from infra.offline import load_stack_yaml, run_stack


def config_for(nodes: int) -> dict:
    config = copy.deepcopy(load_stack_yaml("p5"))
    pool = config["aidc:cluster"]["nodePools"][0]
    pool["count"] = nodes
    pool["capacity"] = {"type": "on-demand"}
    return config


def measure(nodes: int, repeat: int) -> dict:
    times, resources = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        run = run_stack(config=config_for(nodes), stack_name="bench")
        times.append(time.perf_counter() - start)
        resources = sum(1 for r in run.resources if r.custom)
        assert len(run.of_type("aws:ec2/instance:Instance")) == nodes
    return {"nodes": nodes, "resources": resources, "best_s": min(times), "median_s": statistics.median(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default="out/plan_scale.json")
    args = parser.parse_args()
    measure(1, 1)  # warm-up: imports and first-use caches are not part of the scaling figure
    rows = [measure(n, args.repeat) for n in args.nodes]
    base = rows[0]
    for row in rows:
        extra = row["nodes"] - base["nodes"]
        row["s_per_extra_node"] = (row["median_s"] - base["median_s"]) / extra if extra else None
    table = Table(title="Offline plan evaluation time vs p5.48xlarge pool size (goal: < 5 s at 64 nodes)")
    for col in ("nodes", "resources", "best s", "median s", "s / extra node", "goal"):
        table.add_column(col, justify="right")
    for row in rows:
        per = f"{row['s_per_extra_node']:.4f}" if row["s_per_extra_node"] is not None else "-"
        goal = ("met" if row["median_s"] < 5 else "MISSED") if row["nodes"] >= 64 else ""
        table.add_row(str(row["nodes"]), str(row["resources"]), f"{row['best_s']:.2f}", f"{row['median_s']:.2f}",
                      per, goal)  # fmt: skip
    Console(width=120).print(table)
    write_json(Path(args.json), run_info(rows=rows))
    return 0 if all(r["median_s"] < 5 for r in rows if r["nodes"] >= 64) else 1


if __name__ == "__main__":
    raise SystemExit(main())
