"""Plot a metrics file: ``python -m workloads.train.plot METRICS [--out PNG]``.

Writes loss and throughput against step into one PNG (default: METRICS with ``.png``), using
matplotlib's Agg backend so it runs on headless nodes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)

from workloads.train.metrics import read_metrics  # noqa: E402


def plot(metrics: Path, out: Path) -> int:
    """Draw the plot; returns the number of steps plotted."""
    steps, events = read_metrics(metrics)
    if not steps:
        raise ValueError(f"{metrics}: no step records")
    xs = sorted(steps)
    fig, (ax_loss, ax_tps) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    ax_loss.plot(xs, [steps[s]["loss"] for s in xs], color="tab:blue")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title(f"{metrics.name}: {len(xs)} steps")
    ax_tps.plot(xs, [steps[s]["tokens_per_s"] for s in xs], color="tab:green")
    ax_tps.set_ylabel("tokens/s")
    ax_tps.set_xlabel("step")
    for ev in events:
        if ev.get("event") == "resume":
            for ax in (ax_loss, ax_tps):
                ax.axvline(ev.get("from_step", 0), color="tab:red", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return len(xs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.train.plot", description=__doc__.split("\n")[0])
    parser.add_argument("metrics", type=Path, help="JSON-lines metrics file written by the trainer")
    parser.add_argument("--out", type=Path, help="PNG to write (default: METRICS with .png)")
    args = parser.parse_args(argv)
    if not args.metrics.is_file():
        parser.error(f"metrics file {str(args.metrics)!r} does not exist")
    out = args.out or args.metrics.with_suffix(".png")
    try:
        n = plot(args.metrics, out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({n} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
