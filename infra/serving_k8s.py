"""Kubernetes inference service for the EKS path: Deployment, Service, HPA and PDB as one component.

The pods run the same server as the systemd path (``python -m workloads.serve``) or vLLM
(``vllm serve``): both answer ``/health`` and ``/metrics`` and speak the OpenAI API on one port.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import DeploymentSpecArgs
from pulumi_kubernetes.autoscaling.v2 import (
    CrossVersionObjectReferenceArgs,
    HorizontalPodAutoscalerSpecArgs,
    MetricIdentifierArgs,
    MetricSpecArgs,
    MetricTargetArgs,
    PodsMetricSourceArgs,
    ResourceMetricSourceArgs,
)
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    ContainerPortArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    HTTPGetActionArgs,
    LifecycleArgs,
    LifecycleHandlerArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    SecretKeySelectorArgs,
    ServicePortArgs,
    ServiceSpecArgs,
    SleepActionArgs,
    TolerationArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.policy.v1 import PodDisruptionBudgetSpecArgs

ENGINES: tuple[str, ...] = ("builtin", "vllm")
GPU_RESOURCE = "nvidia.com/gpu"
HEALTH_PATH = "/health"
QUEUE_METRIC = "aidc_serve_queue_depth"
LB_SCHEMES: tuple[str, ...] = ("internal", "internet-facing")
#: Read by the AWS Load Balancer Controller (whose own default is internal).
LB_SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
#: Read by the legacy cloud-provider controller (classic ELB, default internet-facing).
LB_INTERNAL_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-internal"
#: Seconds of grace beyond preStop + drain, for model teardown and process exit.
EXIT_MARGIN_S = 15


@dataclass(kw_only=True)
class InferenceServiceArgs:
    """Settings of :class:`InferenceService` (every default is stated here, once).

    Attributes:
        image: container image holding the aidc package (builtin) or vLLM (vllm).
        model: model directory inside the image/volume, or a preset name (builtin only).
        engine: ``builtin`` (``python -m workloads.serve``) or ``vllm`` (``vllm serve``).
        namespace: Kubernetes namespace (default ``default``).
        port: container and Service port (default 8000).
        gpus_per_replica: ``nvidia.com/gpu`` limit per pod (default 1; 0 runs on CPU nodes).
        cpu, memory: requests = limits per pod (default ``"8"``, ``"32Gi"``).
        min_replicas, max_replicas: HPA bounds (default 2..8).
        target_cpu_utilization: HPA target in percent of the CPU request (default 70).
        target_queue_depth: when set, the HPA also scales on the mean ``aidc_serve_queue_depth``
            per pod (needs a custom-metrics adapter; default None).
        min_available: PodDisruptionBudget floor; must stay below ``min_replicas`` so that node
            drains can always make progress (default 1).
        max_batch, queue_size: engine slots and admission queue (defaults 64 and 256).
        drain_timeout_s: SIGTERM drain budget (default 60).
        pre_stop_sleep_s: the pod keeps serving this long after it is marked terminating, before
            SIGTERM, while kube-proxy and load balancers stop routing to it (default 10; needs
            Kubernetes >= 1.30 for the ``sleep`` hook). The grace period is
            ``pre_stop_sleep_s + drain_timeout_s + 15``.
        api_key_secret: name of a Secret whose ``api-key`` entry becomes the bearer token.
        node_selector: node labels the pods require (default: none).
        service_type: ``ClusterIP`` (default) or ``LoadBalancer``; ``LoadBalancer`` requires
            ``api_key_secret`` (a load balancer in front of an unauthenticated API is refused).
        load_balancer_scheme: ``internal`` (default: reachable from the VPC only) or
            ``internet-facing``; only with ``service_type="LoadBalancer"``.
    """

    image: str
    model: str
    engine: str = "builtin"
    namespace: str = "default"
    port: int = 8000
    gpus_per_replica: int = 1
    cpu: str = "8"
    memory: str = "32Gi"
    min_replicas: int = 2
    max_replicas: int = 8
    target_cpu_utilization: int = 70
    target_queue_depth: int | None = None
    min_available: int = 1
    max_batch: int = 64
    queue_size: int = 256
    drain_timeout_s: int = 60
    pre_stop_sleep_s: int = 10
    api_key_secret: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    service_type: str = "ClusterIP"
    load_balancer_scheme: str = "internal"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r} is invalid: allowed {'|'.join(ENGINES)}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"min_replicas={self.min_replicas}, max_replicas={self.max_replicas} are invalid: "
                "need 1 <= min_replicas <= max_replicas"
            )
        if not 0 <= self.min_available < self.min_replicas:
            raise ValueError(
                f"min_available={self.min_available} is invalid: allowed 0..{self.min_replicas - 1} "
                "(min_available >= min_replicas would block every node drain)"
            )
        if self.gpus_per_replica < 0 or not 1 <= self.port <= 65535:
            raise ValueError(f"gpus_per_replica={self.gpus_per_replica}, port={self.port}: need >= 0 and 1..65535")
        if self.service_type not in ("ClusterIP", "LoadBalancer"):
            raise ValueError(f"service_type={self.service_type!r} is invalid: allowed ClusterIP|LoadBalancer")
        self._check_exposure()
        if self.pre_stop_sleep_s < 1:
            raise ValueError(f"pre_stop_sleep_s={self.pre_stop_sleep_s} is invalid: allowed >= 1")

    def _check_exposure(self) -> None:
        if self.load_balancer_scheme not in LB_SCHEMES:
            raise ValueError(
                f"load_balancer_scheme={self.load_balancer_scheme!r} is invalid: allowed {'|'.join(LB_SCHEMES)}"
            )
        if self.service_type == "LoadBalancer" and not self.api_key_secret:
            raise ValueError(
                "service_type='LoadBalancer' needs api_key_secret: a load balancer would serve the API "
                "without authentication (use ClusterIP for in-cluster clients)"
            )
        if self.load_balancer_scheme != "internal" and self.service_type != "LoadBalancer":
            raise ValueError(f"load_balancer_scheme={self.load_balancer_scheme!r} needs service_type='LoadBalancer'")

    @property
    def grace_period_s(self) -> int:
        """The pod's termination grace period: it runs from the preStop hook, before SIGTERM."""
        return self.pre_stop_sleep_s + self.drain_timeout_s + EXIT_MARGIN_S

    def service_annotations(self) -> dict[str, str] | None:
        """AWS scheme annotations: both controllers' keys, so neither falls back to its own default."""
        if self.service_type != "LoadBalancer":
            return None
        if self.load_balancer_scheme == "internal":
            return {LB_SCHEME_ANNOTATION: "internal", LB_INTERNAL_ANNOTATION: "true"}
        return {LB_SCHEME_ANNOTATION: "internet-facing"}

    def command(self) -> list[str]:
        """The container command; both engines bind all interfaces inside the pod network."""
        p = str(self.port)
        if self.engine == "vllm":
            return [
                "vllm",
                "serve",
                self.model,
                "--host",
                "0.0.0.0",
                "--port",
                p,
                "--max-num-seqs",
                str(self.max_batch),
            ]
        return [
            "python",
            "-m",
            "workloads.serve",
            "--model",
            self.model,
            "--host",
            "0.0.0.0",
            "--port",
            p,
            "--max-batch",
            str(self.max_batch),
            "--queue-size",
            str(self.queue_size),
            "--drain-timeout",
            str(self.drain_timeout_s),
        ]


class InferenceService(pulumi.ComponentResource):
    """An OpenAI-compatible inference Deployment behind a Service, autoscaled and drain-safe."""

    def __init__(self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aidc:index:InferenceService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app.kubernetes.io/name": "aidc-serve", "app.kubernetes.io/instance": name}
        meta = ObjectMetaArgs(name=name, namespace=args.namespace, labels=labels)
        selector = LabelSelectorArgs(match_labels=labels)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta,
            spec=DeploymentSpecArgs(
                replicas=args.min_replicas,
                selector=selector,
                template=PodTemplateSpecArgs(metadata=ObjectMetaArgs(labels=labels), spec=_pod_spec(args)),
            ),
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(
                name=name, namespace=args.namespace, labels=labels, annotations=args.service_annotations()
            ),
            spec=ServiceSpecArgs(
                selector=labels,
                type=args.service_type,
                ports=[ServicePortArgs(name="http", port=args.port, target_port="http")],
            ),
            opts=child,
        )
        self.hpa = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=meta,
            spec=HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=CrossVersionObjectReferenceArgs(api_version="apps/v1", kind="Deployment", name=name),
                min_replicas=args.min_replicas,
                max_replicas=args.max_replicas,
                metrics=_hpa_metrics(args),
            ),
            opts=child,
        )
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta,
            spec=PodDisruptionBudgetSpecArgs(min_available=args.min_available, selector=selector),
            opts=child,
        )
        self.service_name = self.service.metadata.apply(lambda m: m["name"] if isinstance(m, dict) else m.name)
        self.register_outputs({"serviceName": self.service_name, "port": args.port})


def _hpa_metrics(args: InferenceServiceArgs) -> list[MetricSpecArgs]:
    """CPU utilisation always; with ``target_queue_depth`` also the server's queue depth per pod
    (needs a custom-metrics adapter, e.g. prometheus-adapter, exposing ``aidc_serve_queue_depth``).
    On GPU pods the queue is the better signal: CPU stays low while the GPU is saturated."""
    cpu = MetricTargetArgs(type="Utilization", average_utilization=args.target_cpu_utilization)
    metrics = [MetricSpecArgs(type="Resource", resource=ResourceMetricSourceArgs(name="cpu", target=cpu))]
    if args.target_queue_depth is not None:
        queue = MetricTargetArgs(type="AverageValue", average_value=str(args.target_queue_depth))
        metric = MetricIdentifierArgs(name=QUEUE_METRIC)
        metrics.append(MetricSpecArgs(type="Pods", pods=PodsMetricSourceArgs(metric=metric, target=queue)))
    return metrics


def _pod_spec(args: InferenceServiceArgs) -> PodSpecArgs:
    limits = {"cpu": args.cpu, "memory": args.memory}
    if args.gpus_per_replica:
        limits[GPU_RESOURCE] = str(args.gpus_per_replica)
    env = []
    if args.api_key_secret:
        ref = SecretKeySelectorArgs(name=args.api_key_secret, key="api-key")
        env.append(EnvVarArgs(name="AIDC_SERVE_API_KEY", value_from=EnvVarSourceArgs(secret_key_ref=ref)))
        if args.engine == "vllm":  # vLLM reads its key from VLLM_API_KEY
            env.append(EnvVarArgs(name="VLLM_API_KEY", value_from=EnvVarSourceArgs(secret_key_ref=ref)))

    def probe(period: int, failures: int) -> ProbeArgs:
        return ProbeArgs(
            http_get=HTTPGetActionArgs(path=HEALTH_PATH, port="http"),
            period_seconds=period,
            failure_threshold=failures,
            timeout_seconds=5,
        )

    container = ContainerArgs(
        name="server",
        image=args.image,
        command=args.command(),
        ports=[ContainerPortArgs(name="http", container_port=args.port)],
        env=env or None,
        resources=ResourceRequirementsArgs(requests=dict(limits), limits=limits),
        # Model load and CUDA-graph capture take minutes on big models: the startup probe
        # holds liveness off until the first healthy answer.
        startup_probe=probe(10, 60),
        readiness_probe=probe(5, 2),
        liveness_probe=probe(10, 6),
        # Endpoints drop a terminating pod asynchronously: keep serving until they have, then drain.
        lifecycle=LifecycleArgs(pre_stop=LifecycleHandlerArgs(sleep=SleepActionArgs(seconds=args.pre_stop_sleep_s))),
    )
    tolerations = [TolerationArgs(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")]
    return PodSpecArgs(
        containers=[container],
        termination_grace_period_seconds=args.grace_period_s,
        node_selector=args.node_selector or None,
        tolerations=tolerations if args.gpus_per_replica else None,
    )
