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
    """A job spec mistake: names the field, the value and what is allowed.

    ``field``/``value``/``allowed`` are kept so the CLI can restate it with its flag.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(f"{field}={value!r} is invalid: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A distributed training job on one node pool.

    ``name``: job/unit/Service name (DNS-1123 label). ``pool``: node pool name (``aidc:pool`` tag).
    ``instance_type``: catalog name; it gives GPUs per node and EFA interfaces.
    ``node_ips``: private IPs of the pool's nodes, all different, first = rendezvous host
    (torchrun/systemd path; empty for Kubernetes, where ``nnodes`` is used). ``nnodes``: node
    count (0: ``len(node_ips)``).
    ``nproc_per_node``: workers per node (None: the catalog's GPU count; at most that many on GPUs).
    ``cpu``: CPU (gloo) workers: no GPUs are requested and ``nproc_per_node`` must be given.
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
    nproc_per_node: int | None = None
    cpu: bool = False
    rdzv_port: int = 29500
    max_restarts: int = 3
    module: str = "workloads.train"
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    image: str = ""
    namespace: str = "default"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise LaunchError(
                "name",
                self.name,
                "lowercase letters, digits and '-', starting and ending with a letter or digit, "
                "at most 52 chars (a DNS-1123 label with room for '-<index>')",
            )
        if not self.pool:
            raise LaunchError("pool", self.pool, "name the node pool (its aidc:pool tag)")
        try:
            instance_type(self.instance_type)
        except KeyError as exc:
            raise LaunchError("instance_type", self.instance_type, exc.args[0]) from None
        self._check_nodes()
        self._check_procs()
        if not 1 <= self.rdzv_port <= 65535:
            raise LaunchError("rdzv_port", self.rdzv_port, "1..65535")
        if self.max_restarts < 0:
            raise LaunchError("max_restarts", self.max_restarts, "must be >= 0")

    def _check_nodes(self) -> None:
        seen: set[str] = set()
        for ip in self.node_ips:
            try:
                addr = str(ipaddress.ip_address(ip))
            except ValueError:
                raise LaunchError("node_ips", ",".join(self.node_ips), f"{ip!r} is not an IP address") from None
            if addr in seen:  # the rendezvous waits for a node that never comes
                raise LaunchError("node_ips", ",".join(self.node_ips), f"{ip} is listed twice; nodes must differ")
            seen.add(addr)
        if self.nnodes < 0 or (self.node_ips and self.nnodes not in (0, len(self.node_ips))):
            raise LaunchError("nnodes", self.nnodes, f"0 or the number of node IPs ({len(self.node_ips)})")
        if self.node_count < 1:
            raise LaunchError("nnodes", self.nnodes, "give the node IPs or a node count")

    def _check_procs(self) -> None:
        gpus = self.instance.gpus
        if self.nproc_per_node is None:
            if not self.uses_gpus:
                what = "CPU workers (--cpu)" if self.cpu else f"{self.instance_type} has no GPU"
                raise LaunchError("nproc_per_node", None, f"{what}: give the number of workers per node")
        elif self.nproc_per_node < 1:
            raise LaunchError("nproc_per_node", self.nproc_per_node, "must be >= 1 (leave it out for one per GPU)")
        elif self.uses_gpus and self.nproc_per_node > gpus:
            raise LaunchError(
                "nproc_per_node",
                self.nproc_per_node,
                f"{self.instance_type} has {gpus} GPUs: at most {gpus} workers per node (use --cpu for CPU workers)",
            )

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
        """Workers map onto the catalog's GPUs (and request them on Kubernetes) unless ``cpu`` is set."""
        return not self.cpu and self.instance.gpus > 0

    @property
    def world_size(self) -> int:
        return self.node_count * self.procs_per_node
