"""Pulumi mock tests of infra/serving_k8s.py: invariants of the Deployment, Service, HPA and PDB."""

from __future__ import annotations

import re

import pulumi
import pytest

from infra.serving_k8s import InferenceService, InferenceServiceArgs

CREATED: dict[str, dict] = {}


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        CREATED[args.typ] = {"name": args.name, "inputs": args.inputs}
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@pytest.fixture(autouse=True)
def _mocks() -> None:
    # Set per test, not at import: other test modules install their own mocks at import time.
    pulumi.runtime.set_mocks(Mocks(), project="aidc", stack="test", preview=False)


DEPLOY, SVC = "kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service"
HPA, PDB = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:policy/v1:PodDisruptionBudget"


def _all_registered(svc: InferenceService) -> pulumi.Output:
    """Resolves once every child was registered with the mocks (their ids exist)."""
    return pulumi.Output.all(svc.deployment.id, svc.service.id, svc.hpa.id, svc.pdb.id, svc.service_name)


def _build(**overrides) -> InferenceService:
    CREATED.clear()
    args = InferenceServiceArgs(image="ghcr.io/example/aidc:1", model="/models/gpt2", **overrides)
    return InferenceService("chat", args)


@pulumi.runtime.test
def test_component_resources_and_invariants():
    svc = _build(gpus_per_replica=2, min_replicas=3, max_replicas=9, min_available=2, api_key_secret="serve-key")

    def check(_):
        assert set(CREATED) == {"aidc:index:InferenceService", DEPLOY, SVC, HPA, PDB}
        assert [CREATED[t]["name"] for t in (DEPLOY, SVC, HPA, PDB)] == [
            "chat-deployment",
            "chat-service",
            "chat-hpa",
            "chat-pdb",
        ]
        dep = CREATED[DEPLOY]["inputs"]["spec"]
        pod = dep["template"]["spec"]
        (container,) = pod["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["command"][:3] == ["python", "-m", "workloads.serve"]
        assert container["command"][container["command"].index("--host") + 1] == "0.0.0.0"
        assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "serve-key", "key": "api-key"}
        # SIGTERM comes only after the preStop sleep, and the grace period counts from its start:
        # it must hold the sleep and the server's whole drain (60 s).
        assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 10}}
        assert pod["terminationGracePeriodSeconds"] >= 10 + 60 + 10
        labels = dep["template"]["metadata"]["labels"]
        assert dep["selector"]["matchLabels"] == labels
        assert CREATED[SVC]["inputs"]["spec"]["selector"] == labels
        assert CREATED[PDB]["inputs"]["spec"]["selector"]["matchLabels"] == labels
        assert CREATED[SVC]["inputs"]["spec"]["type"] == "ClusterIP"
        assert "annotations" not in CREATED[SVC]["inputs"]["metadata"]  # no load balancer: no scheme
        hpa = CREATED[HPA]["inputs"]["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
        assert [m["type"] for m in hpa["metrics"]] == ["Resource"]  # no queue metric unless asked
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
        assert CREATED[DEPLOY]["inputs"]["metadata"]["name"] == "chat"
        assert CREATED[PDB]["inputs"]["spec"]["minAvailable"] == 2

    return _all_registered(svc).apply(check)


@pulumi.runtime.test
def test_vllm_engine_and_cpu_only_replicas():
    svc = _build(engine="vllm", gpus_per_replica=0, target_queue_depth=4)

    def check(_):
        container = CREATED[DEPLOY]["inputs"]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][:3] == ["vllm", "serve", "/models/gpt2"]
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert "tolerations" not in CREATED[DEPLOY]["inputs"]["spec"]["template"]["spec"]
        (cpu, queue) = CREATED[HPA]["inputs"]["spec"]["metrics"]
        assert cpu["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
        assert queue["pods"]["metric"]["name"] == "aidc_serve_queue_depth"
        assert queue["pods"]["target"] == {"type": "AverageValue", "averageValue": "4"}

    return _all_registered(svc).apply(check)


SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
LEGACY_INTERNAL = "service.beta.kubernetes.io/aws-load-balancer-internal"


@pulumi.runtime.test
def test_load_balancer_is_internal_unless_asked():
    svc = _build(service_type="LoadBalancer", api_key_secret="serve-key")

    def check(_):
        assert CREATED[SVC]["inputs"]["spec"]["type"] == "LoadBalancer"
        # Both controllers' keys: the legacy one otherwise makes an internet-facing ELB.
        assert CREATED[SVC]["inputs"]["metadata"]["annotations"] == {SCHEME: "internal", LEGACY_INTERNAL: "true"}

    return _all_registered(svc).apply(check)


@pulumi.runtime.test
def test_internet_facing_load_balancer_on_request_with_the_key():
    svc = _build(service_type="LoadBalancer", api_key_secret="serve-key", load_balancer_scheme="internet-facing")

    def check(_):
        assert CREATED[SVC]["inputs"]["metadata"]["annotations"] == {SCHEME: "internet-facing"}
        container = CREATED[DEPLOY]["inputs"]["spec"]["template"]["spec"]["containers"][0]
        assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "serve-key", "key": "api-key"}

    return _all_registered(svc).apply(check)


@pulumi.runtime.test
def test_grace_period_covers_pre_stop_and_drain():
    svc = _build(pre_stop_sleep_s=20, drain_timeout_s=120)

    def check(_):
        pod = CREATED[DEPLOY]["inputs"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 20
        assert pod["terminationGracePeriodSeconds"] == 20 + 120 + 15
        assert pod["containers"][0]["command"][-2:] == ["--drain-timeout", "120"]

    return _all_registered(svc).apply(check)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"engine": "tgi"}, "engine='tgi' is invalid: allowed builtin|vllm"),
        ({"min_replicas": 3, "max_replicas": 2}, "need 1 <= min_replicas <= max_replicas"),
        ({"min_replicas": 2, "min_available": 2}, "min_available=2 is invalid: allowed 0..1"),
        ({"service_type": "NodePort"}, "service_type='NodePort' is invalid"),
        (
            {"service_type": "LoadBalancer"},
            "service_type='LoadBalancer' needs api_key_secret: a load balancer would serve the API "
            "without authentication",
        ),
        (
            {"service_type": "LoadBalancer", "load_balancer_scheme": "internet-facing"},
            "service_type='LoadBalancer' needs api_key_secret",
        ),
        (
            {"load_balancer_scheme": "public"},
            "load_balancer_scheme='public' is invalid: allowed internal|internet-facing",
        ),
        (
            {"load_balancer_scheme": "internet-facing", "api_key_secret": "k"},
            "load_balancer_scheme='internet-facing' needs service_type='LoadBalancer'",
        ),
        ({"pre_stop_sleep_s": 0}, "pre_stop_sleep_s=0 is invalid: allowed >= 1"),
    ],
)
def test_contradictory_args_raise_naming_the_field(overrides, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        InferenceServiceArgs(image="i", model="m", **overrides)
