"""Run the trainer under torchrun on this machine (tests, CPU benchmarks, quick experiments).

Rendezvous is c10d on a free loopback port, never a fixed well-known one, so parallel runs on one
machine do not collide.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_local_cmd(
    nproc: int,
    train_args: Sequence[str],
    *,
    port: int | None = None,
    max_restarts: int = 0,
    module: str = "workloads.train",
) -> list[str]:
    """torchrun argv for ``nproc`` workers of ``module`` (the trainer, or a test's wrapper of it) on loopback."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return [
        str(torchrun) if torchrun.exists() else "torchrun",
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port or free_port()}",
        f"--max-restarts={max_restarts}",
        "-m",
        module,
        *train_args,
    ]


def run_local(
    nproc: int,
    train_args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    max_restarts: int = 0,
    timeout: float = 300,
    cwd: str | None = None,
    module: str = "workloads.train",
) -> subprocess.CompletedProcess:
    """Run to completion (bounded by ``timeout``); stdout and stderr captured together.

    torchrun gets its own process group, killed as a whole on timeout or error, so no worker
    outlives the call.
    """
    full_env = {**os.environ, **(env or {})}
    # One intra-op thread per worker: deterministic kernels and no oversubscription of small CPUs.
    full_env.setdefault("OMP_NUM_THREADS", "1")
    argv = torchrun_local_cmd(nproc, train_args, max_restarts=max_restarts, module=module)
    proc = subprocess.Popen(
        argv, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        try:  # the whole group: torchrun and any worker it left behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, None)
