"""torchrun command lines and environment for each node of a job (the SSH/systemd path).

Every node runs the same command: c10d rendezvous on the pool's first node assigns node ranks, so
a restarted or replaced node needs no per-node edits.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from workloads.launch.nccl import NCCL_DEFAULTS, load_nccl_env
from workloads.launch.spec import JobSpec, LaunchError


def rdzv_endpoint(spec: JobSpec) -> str:
    if not spec.node_ips:
        raise LaunchError(
            "node_ips", "", "the torchrun and ansible formats need the node IPs: the first hosts the rendezvous"
        )
    host = spec.node_ips[0]
    return f"[{host}]:{spec.rdzv_port}" if ":" in host else f"{host}:{spec.rdzv_port}"


def torchrun_args(spec: JobSpec, *, endpoint: str | None = None, torchrun: str = "torchrun") -> list[str]:
    """argv of the torchrun command (identical on every node of the job).

    ``endpoint`` defaults to the first node's IP and ``rdzv_port``; Kubernetes passes pod 0's DNS name.
    """
    return [
        torchrun,
        f"--nnodes={spec.node_count}",
        f"--nproc-per-node={spec.procs_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint or rdzv_endpoint(spec)}",
        f"--rdzv-id={spec.name}",
        f"--max-restarts={spec.max_restarts}",
        "-m",
        spec.module,
        *spec.args,
    ]


def job_env(spec: JobSpec, *, nccl_defaults: Path = NCCL_DEFAULTS) -> dict[str, str]:
    """NCCL env of the nccl role, then the spec's own env on top (the job wins on conflicts)."""
    return {**load_nccl_env(nccl_defaults), **spec.env}


def node_commands(spec: JobSpec, *, nccl_defaults: Path = NCCL_DEFAULTS) -> dict[str, str]:
    """Shell command per node IP: ``env K=V ... torchrun ...``, quoted for a POSIX shell."""
    env = job_env(spec, nccl_defaults=nccl_defaults)
    argv = ["env", *(f"{k}={v}" for k, v in sorted(env.items())), *torchrun_args(spec)] if env else torchrun_args(spec)
    line = shlex.join(argv)
    return {ip: line for ip in spec.node_ips}
