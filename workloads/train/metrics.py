"""Training metrics: JSON lines (one record per step, plus events) and a rank-0 progress line.

Each step record: ``step``, ``loss`` (float), ``loss_hex`` (``float.hex`` — exact, for bit-identity
checks), ``lr``, ``tokens_per_s``, ``mfu`` (fraction or null), ``mem_gib`` (peak CUDA memory, or
the process's peak RSS on CPU), ``time`` (unix seconds). Events (``{"event": "resume", ...}``) mark
restarts; a resumed run appends, so a step can appear twice — the last record wins.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from workloads.train.config import ConfigError


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class MetricsWriter:
    """Appends JSON lines to ``path`` (rank 0 only; other ranks pass ``enabled=False``).

    A path that cannot be written raises :class:`ConfigError` naming ``--metrics``.
    """

    def __init__(self, path: str, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self._fh = None
        self._stream = stream or sys.stdout
        if enabled and path:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(path, "a", buffering=1)  # line-buffered: a kill -9 loses at most one line
            except OSError as exc:
                reason = "Not a directory" if isinstance(exc, FileExistsError) else exc.strerror  # a file in the way
                raise ConfigError("--metrics", path, f"cannot be written ({reason}: {exc.filename})") from None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(record, sort_keys=True) + "\n")

    def step(
        self,
        *,
        step: int,
        total: int,
        loss: float,
        lr: float,
        tokens_per_s: float,
        mfu: float | None,
        mem_gib: float,
        progress: bool,
    ) -> None:
        if not self.enabled:
            return
        self.write(
            {
                "step": step,
                "loss": loss,
                "loss_hex": float(loss).hex(),
                "lr": lr,
                "tokens_per_s": tokens_per_s,
                "mfu": mfu,
                "mem_gib": mem_gib,
                "time": time.time(),
            }
        )
        if progress:
            print(progress_line(step, total, loss, lr, tokens_per_s, mfu, mem_gib), file=self._stream, flush=True)

    def event(self, name: str, **fields: Any) -> None:
        if self.enabled:
            self.write({"event": name, "time": time.time(), **fields})
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"[{name}] {detail}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def progress_line(
    step: int, total: int, loss: float, lr: float, tokens_per_s: float, mfu: float | None, mem_gib: float
) -> str:
    mfu_txt = f"{100 * mfu:5.1f}%" if mfu is not None else "  n/a"
    return (
        f"step {step:>6}/{total} | loss {loss:8.4f} | lr {lr:.2e} | {tokens_per_s / 1e3:9.1f}k tok/s"
        f" | MFU {mfu_txt} | mem {mem_gib:6.2f} GiB"
    )


def read_metrics(path: str | Path) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """Step records keyed by step (the last record of a step wins) and the list of events."""
    steps: dict[int, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by kill -9
        if "event" in rec:
            events.append(rec)
        elif "step" in rec:
            steps[int(rec["step"])] = rec
    return steps, events
