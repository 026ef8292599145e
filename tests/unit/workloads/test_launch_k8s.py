"""Kubernetes Indexed Job + headless Service: structure checks against the Kubernetes schema rules."""

from __future__ import annotations

import pytest
import yaml

from workloads.launch.__main__ import main as launch_main
from workloads.launch.k8s import EFA_RESOURCE, GPU_RESOURCE, indexed_job, manifests, rendezvous_host, to_yaml
from workloads.launch.spec import JobSpec, LaunchError


def spec(**kw) -> JobSpec:
    base = {
        "name": "gpt-124m",
        "pool": "gpu",
        "instance_type": "p5.48xlarge",
        "nnodes": 2,
        "image": "registry.example/aidc:1",
        "namespace": "train",
        "args": ("--preset", "124m"),
    }
    return JobSpec(**{**base, **kw})


@pytest.fixture
def docs(tmp_path):
    return manifests(spec(), nccl_defaults=tmp_path / "none.yml")


def test_service_is_headless_and_first(docs):
    svc, job = docs
    assert svc["kind"] == "Service" and svc["apiVersion"] == "v1"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["port"] == 29500


def test_job_is_indexed_with_one_pod_per_node(docs):
    svc, job = docs
    js = job["spec"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert js["completionMode"] == "Indexed"
    assert js["parallelism"] == js["completions"] == 2
    pod = js["template"]["spec"]
    assert pod["subdomain"] == svc["metadata"]["name"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")  # the only values a Job accepts


def test_gpu_and_efa_limits_come_from_the_catalog(docs):
    container = docs[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {GPU_RESOURCE: 8, EFA_RESOURCE: 32}
    g6e = manifests(spec(instance_type="g6e.24xlarge"))[1]["spec"]["template"]["spec"]["containers"][0]
    assert g6e["resources"]["limits"] == {GPU_RESOURCE: 4, EFA_RESOURCE: 2}
    no_efa = manifests(spec(instance_type="g6.xlarge"))[1]["spec"]["template"]["spec"]["containers"][0]
    assert no_efa["resources"]["limits"] == {GPU_RESOURCE: 1}


def test_torchrun_rendezvous_on_pod_zero(docs):
    command = docs[1]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert rendezvous_host(spec()) == "gpt-124m-0.gpt-124m.train.svc.cluster.local"
    assert "--rdzv-endpoint=gpt-124m-0.gpt-124m.train.svc.cluster.local:29500" in command
    assert "--nnodes=2" in command and "--nproc-per-node=8" in command
    assert command[-3:] == ["workloads.train", "--preset", "124m"]


def test_names_are_dns_labels_and_yaml_round_trips(docs):
    text = to_yaml(docs)
    assert list(yaml.safe_load_all(text)) == docs
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and name == name.lower()


def test_cpu_job_requests_no_gpus(tmp_path):
    job = indexed_job(spec(instance_type="g5.xlarge", nproc_per_node=2, cpu=True), nccl_defaults=tmp_path / "x.yml")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {} and "tolerations" not in pod


def test_job_without_image_is_refused():
    with pytest.raises(LaunchError, match="image=''"):
        indexed_job(spec(image=""))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"namespace": "Bad_NS"}, "namespace='Bad_NS' is invalid: a DNS-1123 label"),
        ({"namespace": "a" * 64}, "is invalid: a DNS-1123 label: at most 63"),
        ({"namespace": "-ns"}, "namespace='-ns' is invalid"),
        ({"pool": "Bad Pool"}, "pool='Bad Pool' is invalid: a Kubernetes label value"),
        ({"pool": "gpu-"}, "pool='gpu-' is invalid"),
        ({"pool": "p" * 64}, "is invalid: a Kubernetes label value: at most 63"),
    ],
)
def test_names_kubernetes_would_reject_are_refused(kw, message):
    with pytest.raises(LaunchError, match=message):
        manifests(spec(**kw))


def test_label_value_rules_allow_upper_case_dots_and_underscores():
    docs = manifests(spec(pool="GPU_pool.a", namespace="train-1"))
    assert docs[1]["metadata"]["labels"]["aidc/pool"] == "GPU_pool.a"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--pool", "Bad Pool"], "error: --pool 'Bad Pool' is invalid: a Kubernetes label value: at most 63"),
        (["--namespace", "Bad_NS"], "error: --namespace Bad_NS is invalid: a DNS-1123 label: at most 63"),
    ],
)
def test_cli_names_the_flag_of_a_bad_kubernetes_name(capsys, args, line):
    base = ["--name", "j", "--pool", "gpu", "--instance-type", "p5.48xlarge", "--nnodes", "2", "--image", "i:1"]
    assert launch_main([*base, *args, "--format", "k8s"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
