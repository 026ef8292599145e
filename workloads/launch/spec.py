"""The job spec every launcher starts from: torchrun command lines, systemd units, K8s manifests.

One dataclass, validated once; the launchers are pure functions of it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from infra.catalog import InstanceType, instance_type

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")  # DNS-1123 label, room for "-<index>"


class LaunchError(ValueError):
    """A job spec mistake: names the field, the value and what is allowed."""


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A distributed training job on one node pool.

    ``name``: job/unit/Service name (DNS-1123 label). ``pool``: node pool name (``aidc:pool`` tag).
    ``instance_type``: catalog name; it gives GPUs per node and EFA interfaces.
    ``node_ips``: private IPs of the pool's nodes, first = rendezvous host (torchrun/systemd path;
    empty for Kubernetes, where ``nnodes`` is used). ``nnodes``: node count (0: ``len(node_ips)``).
    ``nproc_per_node``: workers per node (0: the catalog's GPU count; set it for CPU/gloo runs).
    ``rdzv_port``: c10d rendezvous port on the first node. ``max_restarts``: torchrun restarts.
    ``module``/``args``: what torchrun runs (``python -m module args...``).
    ``env``: extra environment, merged over the NCCL env of the nccl role.
    ``image``/``namespace``: for the Kubernetes manifests.
    """

    name: str
    pool: str
    instance_type: str
    node_ips: tuple[str, ...] = ()
    nnodes: int = 0
    nproc_per_node: int = 0
    rdzv_port: int = 29500
    max_restarts: int = 3
    module: str = "workloads.train"
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    image: str = ""
    namespace: str = "default"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise LaunchError(f"name={self.name!r} is invalid: lowercase letters, digits and '-', at most 52 chars")
        if not self.pool:
            raise LaunchError("pool='' is invalid: name the node pool (its aidc:pool tag)")
        try:
            instance_type(self.instance_type)
        except KeyError as exc:
            raise LaunchError(f"instance_type: {exc}") from None
        for ip in self.node_ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise LaunchError(f"node_ips contains {ip!r}: not an IP address") from None
        if self.nnodes < 0 or (self.node_ips and self.nnodes not in (0, len(self.node_ips))):
            raise LaunchError(f"nnodes={self.nnodes} is invalid: 0 or len(node_ips)={len(self.node_ips)}")
        if self.node_count < 1:
            raise LaunchError("nnodes=0 and node_ips=() is invalid: give the node IPs or a node count")
        if self.nproc_per_node < 0 or self.procs_per_node < 1:
            raise LaunchError(
                f"nproc_per_node={self.nproc_per_node} is invalid: {self.instance_type} has no GPU; "
                "set nproc_per_node for a CPU (gloo) run"
            )
        if not 1 <= self.rdzv_port <= 65535:
            raise LaunchError(f"rdzv_port={self.rdzv_port} is invalid: 1..65535")
        if self.max_restarts < 0:
            raise LaunchError(f"max_restarts={self.max_restarts} is invalid: must be >= 0")

    @property
    def instance(self) -> InstanceType:
        return instance_type(self.instance_type)

    @property
    def node_count(self) -> int:
        return self.nnodes or len(self.node_ips)

    @property
    def procs_per_node(self) -> int:
        return self.nproc_per_node or self.instance.gpus

    @property
    def uses_gpus(self) -> bool:
        """GPU resources are requested only when workers map onto the catalog's GPUs."""
        return self.nproc_per_node == 0

    @property
    def world_size(self) -> int:
        return self.node_count * self.procs_per_node
