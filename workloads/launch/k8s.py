"""Kubernetes manifests for the EKS path: an Indexed Job (one pod per node) + a headless Service.

Pods get stable DNS names ``<job>-<index>.<service>.<namespace>.svc.cluster.local`` because the
Job's pod template sets ``subdomain`` to the headless Service's name; pod 0 hosts the c10d
rendezvous. GPUs and EFA devices are requested as extended resources (NVIDIA device plugin and AWS
EFA device plugin), with counts from the instance catalog.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from workloads.launch.nccl import NCCL_DEFAULTS
from workloads.launch.spec import JobSpec, LaunchError
from workloads.launch.torchrun import job_env, torchrun_args

GPU_RESOURCE = "nvidia.com/gpu"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# Kubernetes validation rules: a DNS-1123 label (namespaces, names) and a label value.
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def check_names(spec: JobSpec) -> None:
    """Refuse names the API server would reject, before ``kubectl apply`` half-applies the manifests."""
    if not DNS1123_LABEL.match(spec.namespace):
        raise LaunchError(
            "namespace",
            spec.namespace,
            "a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    if not LABEL_VALUE.match(spec.pool):  # it becomes the aidc/pool label value
        raise LaunchError(
            "pool",
            spec.pool,
            "a Kubernetes label value: at most 63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit",
        )


def service_name(spec: JobSpec) -> str:
    return spec.name


def rendezvous_host(spec: JobSpec) -> str:
    return f"{spec.name}-0.{service_name(spec)}.{spec.namespace}.svc.cluster.local"


def _labels(spec: JobSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": "aidc-train", "aidc/job": spec.name, "aidc/pool": spec.pool}


def headless_service(spec: JobSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(spec), "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {
            "clusterIP": "None",
            # Pods must resolve each other before they are Ready: rendezvous happens at start-up.
            "publishNotReadyAddresses": True,
            "selector": {"aidc/job": spec.name},
            "ports": [{"name": "c10d", "port": spec.rdzv_port, "targetPort": spec.rdzv_port}],
        },
    }


def _resources(spec: JobSpec) -> dict[str, Any]:
    if not spec.uses_gpus:
        return {}
    limits = {GPU_RESOURCE: spec.instance.gpus}
    if spec.instance.efa_interfaces:
        limits[EFA_RESOURCE] = spec.instance.efa_interfaces
    return {"limits": limits, "requests": dict(limits)}


def _container(spec: JobSpec, env: dict[str, str]) -> dict[str, Any]:
    command = torchrun_args(spec, endpoint=f"{rendezvous_host(spec)}:{spec.rdzv_port}")
    return {
        "name": "trainer",
        "image": spec.image,
        "command": command,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "ports": [{"name": "c10d", "containerPort": spec.rdzv_port}],
        "resources": _resources(spec),
        # NCCL and DataLoader workers need more shared memory than the 64 MiB container default.
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }


def indexed_job(spec: JobSpec, *, nccl_defaults: Path = NCCL_DEFAULTS) -> dict[str, Any]:
    if not spec.image:
        raise LaunchError("image", "", "the Kubernetes Job needs a container image with aidc and torch")
    n = spec.node_count
    pod_spec: dict[str, Any] = {
        "subdomain": service_name(spec),
        "restartPolicy": "Never",
        "nodeSelector": {INSTANCE_TYPE_LABEL: spec.instance_type},
        "containers": [_container(spec, job_env(spec, nccl_defaults=nccl_defaults))],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    if spec.uses_gpus:
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            # torchrun restarts workers in place; a pod that still fails means the node is bad.
            "backoffLimit": 0,
            "template": {"metadata": {"labels": _labels(spec)}, "spec": pod_spec},
        },
    }


def manifests(spec: JobSpec, *, nccl_defaults: Path = NCCL_DEFAULTS) -> list[dict[str, Any]]:
    """Service first: its DNS must exist when the pods start."""
    check_names(spec)
    return [headless_service(spec), indexed_job(spec, nccl_defaults=nccl_defaults)]


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)
