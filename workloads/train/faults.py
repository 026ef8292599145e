"""Fault injection for the fault-tolerance tests: a worker SIGKILLs itself at a chosen point.

Env vars (all optional; unset = no fault):
  ``AIDC_FAULT_AT_STEP``       kill before this optimizer step runs (same effect as ``kill -9``)
  ``AIDC_FAULT_IN_SAVE_AT_STEP`` kill inside the checkpoint save of this step, after the data
                                files are written but before the checkpoint is marked complete
  ``AIDC_FAULT_RANK``          which rank dies (default 1)

A fault fires only in torchrun's first attempt (``TORCHELASTIC_RESTART_COUNT`` 0), so the restarted
group runs through the same step: that is what the resume tests need.
"""

from __future__ import annotations

import os
import signal
import sys


def _armed(env_var: str, step: int, rank: int) -> bool:
    want = os.environ.get(env_var)
    if want is None or int(want) != step:
        return False
    if int(os.environ.get("AIDC_FAULT_RANK", "1")) != rank:
        return False
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0


def maybe_die(env_var: str, step: int, rank: int) -> None:
    """SIGKILL this process when ``env_var`` names ``step`` for this rank (first attempt only)."""
    if _armed(env_var, step, rank):
        print(f"[fault] rank {rank} pid {os.getpid()}: SIGKILL at step {step} ({env_var})", flush=True)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
