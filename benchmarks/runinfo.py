"""Provenance and output for benchmark JSON: every RESULTS.md row cites commit, machine, versions.

The GPU machine gets a copy of the working tree without ``.git``, so the commit can come from
``AIDC_COMMIT`` (benchmarks/gpu/session.sh passes it along). JSON is written atomically after
every measured point, so a run stopped at its time limit still leaves what it measured.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def commit() -> str:
    """``AIDC_COMMIT`` if set, else ``git rev-parse HEAD`` (+``-dirty``), else ``unknown``."""
    if os.environ.get("AIDC_COMMIT"):
        return os.environ["AIDC_COMMIT"]
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_info(**extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "commit": commit(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    torch = sys.modules.get("torch")  # only for benchmarks that use it: importing it costs seconds
    if torch is not None:
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["device"] = torch.cuda.get_device_name(0)
    info.setdefault("device", platform.processor() or "cpu")
    info.update(extra)
    return info


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
