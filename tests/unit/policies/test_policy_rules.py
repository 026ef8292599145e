"""Every rule passes the compliant stack and fires, alone, on one mutated setting."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from policy_stacks import BUCKET, TAGS, drop, find, good_stack, policy_json, res

from policies import ADVISORY, MANDATORY, RULES, RULES_BY_NAME
from policies.runner import evaluate


def _set(name: str, *path: str, value) -> Callable[[list], None]:
    def mutate(stack: list) -> None:
        cur = find(stack, name)["props"]
        for key in path[:-1]:
            cur = cur[key]
        if value is _DELETE:
            del cur[path[-1]]
        else:
            cur[path[-1]] = value
    return mutate


_DELETE = object()


def _add(resource: dict) -> Callable[[list], None]:
    return lambda stack: stack.append(resource)


def _drop(name: str) -> Callable[[list], None]:
    return lambda stack: drop(stack, name)


def _both(*mutations: Callable[[list], None]) -> Callable[[list], None]:
    def mutate(stack: list) -> None:
        for m in mutations:
            m(stack)
    return mutate


MUTATIONS: dict[str, Callable[[list], None]] = {
    "ec2-imdsv2-required": _set("train-lt", "metadataOptions", "httpTokens", value="optional"),
    "ec2-block-devices-encrypted": lambda s: find(s, "train-lt")["props"]["blockDeviceMappings"][0]["ebs"]
    .update(encrypted="false"),
    "ebs-volume-encrypted": _set("scratch", "encrypted", value=False),
    "ebs-encryption-by-default": _add(res("aws:ebs/encryptionByDefault:EncryptionByDefault", "ebs-default",
                                          {"enabled": False})),
    "instance-type-allowlist": _set("train-lt", "instanceType", value="x2iedn.32xlarge"),
    "sg-no-world-ingress": _set("lustre-988", "cidrIpv4", value="0.0.0.0/0"),
    "default-sg-no-rules": _add(res("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "default-sg", {
        "vpcId": "vpc-1", "ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]})),
    "vpc-flow-logs": _drop("vpc-flow"),
    "s3-public-access-block": _set("ckpt-pab", "restrictPublicBuckets", value=False),
    "s3-sse-kms": lambda s: find(s, "ckpt-sse")["props"]["rules"][0]["applyServerSideEncryptionByDefault"]
    .update(sseAlgorithm="AES256", kmsMasterKeyId=None),
    "s3-versioning": _set("ckpt-versioning", "versioningConfiguration", "status", value="Suspended"),
    "s3-tls-only": _drop("ckpt-policy"),
    "kms-key-rotation": _set("key", "enableKeyRotation", value=False),
    "iam-no-admin-wildcard": _set("node-describe", "policy",
                                  value=policy_json({"Effect": "Allow", "Action": "*", "Resource": "*"})),
    "iam-no-service-wildcard": lambda s: find(s, "node-role")["props"]["inlinePolicies"][0].update(
        policy=policy_json({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"})),
    "cloudtrail-multi-region": _set("trail", "isMultiRegionTrail", value=False),
    "cloudtrail-log-validation": _set("trail", "enableLogFileValidation", value=False),
    "cloudtrail-kms": _set("trail", "kmsKeyId", value=_DELETE),
    "log-group-kms": _set("flow-logs", "kmsKeyId", value=_DELETE),
    "fsx-lustre-cmk": _set("lustre", "kmsKeyId", value=_DELETE),
    "efs-cmk": _set("home", "encrypted", value=False),
    "eks-secrets-encryption": _set("eks", "encryptionConfig", value=_DELETE),
    "eks-endpoint-not-public": _set("eks", "vpcConfig", "endpointPublicAccess", value=True),
    "efa-security-group-self-reference": lambda s: find(s, "efa-sg")["props"]["egress"].pop(0),
    "efa-single-az": _set("train-asg", "vpcZoneIdentifiers", value=["subnet-a", "subnet-b"]),
    "efa-cluster-placement-group": _set("pg", "strategy", value="spread"),
    "placement-capacity-compatible": _both(
        _add(res("aws:ec2/capacityReservation:CapacityReservation", "odcr", {
            "instanceType": "p5.48xlarge", "availabilityZone": "us-east-1a", "instanceCount": 2,
            "instancePlatform": "Linux/UNIX", "tags": TAGS}, "cr-1")),
        _set("train-lt", "capacityReservationSpecification",
             value={"capacityReservationTarget": {"capacityReservationId": "cr-1"}})),
    # Without its placement group: a group on a block is capacity-block-no-placement-group's finding.
    "capacity-block-targets-reservation": _both(
        _set("train-lt", "instanceMarketOptions", value={"marketType": "capacity-block"}),
        _set("train-lt", "placement", value=_DELETE)),
    "capacity-block-no-placement-group": _both(
        _set("train-lt", "instanceMarketOptions", value={"marketType": "capacity-block"}),
        _set("train-lt", "capacityReservationSpecification",
             value={"capacityReservationTarget": {"capacityReservationId": "cr-block"}})),
    "efa-interfaces-match-instance-type": _set("train-lt", "instanceType", value="g6.xlarge"),
    "required-tags": _set("home", "tags", value={"Name": "home"}),
    "eks-audit-logging": _set("eks", "enabledClusterLogTypes", value=["api"]),
    "ec2-no-public-ip": lambda s: find(s, "train-lt")["props"]["networkInterfaces"][0].update(
        associatePublicIpAddress="true"),
    "subnet-no-auto-public-ip": _set("private-b", "mapPublicIpOnLaunch", value=True),
    "s3-no-public-grants": _add(res("aws:s3/bucketAclV2:BucketAclV2", "ckpt-acl", {
        "bucket": BUCKET, "acl": "public-read"})),
}


def test_every_rule_has_a_mutation():
    assert set(MUTATIONS) == set(RULES_BY_NAME)


def test_good_stack_has_no_violation():
    assert evaluate(good_stack()) == []


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_mutation_fires_exactly_its_rule(rule):
    stack = copy.deepcopy(good_stack())
    MUTATIONS[rule](stack)
    violations = evaluate(stack)
    assert {v.rule for v in violations} == {rule}, [v.message for v in violations]
    assert all(v.level == RULES_BY_NAME[rule].level and v.message for v in violations)
    assert all(v.resource_name for v in violations), "every finding names a resource"


def test_rule_metadata_is_complete_and_levels_follow_the_policy():
    assert len(RULES) >= 20
    advisory = {r.name for r in RULES if r.level == ADVISORY}
    assert advisory == {"instance-type-allowlist", "required-tags", "iam-no-service-wildcard",
                        "capacity-block-no-placement-group"}  # ParallelCluster only warns about it
    for rule in RULES:
        assert rule.level in (MANDATORY, ADVISORY)
        assert rule.control and rule.description and rule.remediation and rule.validator.__doc__
        assert (rule.kind == "stack") == (not rule.resource_types)

