"""``Pulumi.localstack.yaml`` (the stack hosted CI deploys into emulators) is valid, and every AWS
service the program touches for it has an emulator endpoint: a missing one would make
``pulumi up`` in CI call real AWS with dummy credentials. Pure: runs without emulators."""

from __future__ import annotations

from urllib.parse import urlparse

from infra.config import load_stack_config
from infra.offline import load_stack_yaml

from ._stack import offline_run

#: pulumi-aws module (type token) or invoke -> the provider's endpoint key.
SERVICE_OF_MODULE = {
    "autoscaling": "autoscaling",
    "cloudtrail": "cloudtrail",
    "cloudwatch": "logs",
    "ebs": "ec2",
    "ec2": "ec2",
    "fsx": "fsx",
    "iam": "iam",
    "kms": "kms",
    "s3": "s3",
    "ssm": "ssm",
    "vpc": "ec2",
}
SERVICE_OF_INVOKE = {
    "aws:index/getCallerIdentity:getCallerIdentity": "sts",
    "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": "ec2",
    "aws:ssm/getParameter:getParameter": "ssm",
    "aws:ec2/getAmi:getAmi": "ec2",
}
#: Invokes the provider answers locally, without an API call.
LOCAL_INVOKES = {
    "aws:index/getPartition:getPartition",
    "aws:index/getRegion:getRegion",
    "aws:index/getAvailabilityZones:getAvailabilityZones",
}


def _endpoints() -> dict[str, str]:
    (endpoints,) = load_stack_yaml("localstack")["aws:endpoints"]
    return endpoints


def test_config_validates_without_fsx():
    raw = load_stack_yaml("localstack")
    aidc = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("aidc:")}
    cfg = load_stack_config(aidc, stack="localstack")
    assert not cfg.storage.fsx.enabled
    assert raw["aws:skipCredentialsValidation"] is True and raw["aws:skipRequestingAccountId"] is True
    assert raw["aws:s3UsePathStyle"] is True


def test_endpoints_are_loopback_only():
    for service, url in _endpoints().items():
        assert urlparse(url).hostname in ("localhost", "127.0.0.1"), service


def test_every_service_the_program_uses_has_an_endpoint():
    run = offline_run("localstack")
    used = {SERVICE_OF_MODULE[r.type.split(":")[1].split("/")[0]] for r in run.resources if r.type.startswith("aws:")}
    used |= {SERVICE_OF_INVOKE[i] for i in run.invokes if i not in LOCAL_INVOKES}
    assert used - set(_endpoints()) == set()
    assert "fsx" not in used  # LocalStack community has no FSx
