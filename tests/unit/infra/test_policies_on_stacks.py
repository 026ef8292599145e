"""The policy pack over the real program: every shipped stack passes with no violation, and one
setting broken in a mock run of the program fires exactly the rule that guards it."""

import copy
import json
from pathlib import Path

import pytest

from infra.offline import REPO_ROOT, load_stack_yaml, run_stack
from policies import RULES_BY_NAME
from policies.runner import evaluate

STACKS = sorted(p.name.split(".")[1] for p in Path(REPO_ROOT).glob("Pulumi.*.yaml"))


@pytest.fixture(scope="module")
def p5_resources():
    return run_stack("p5").engine_resources()


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_has_no_violation_at_any_level(stack):
    violations = evaluate(run_stack(stack).engine_resources())
    assert [(v.rule, v.resource_name, v.message) for v in violations] == []


def one(resources, type_suffix, name_suffix=""):
    found = [r for r in resources if r["type"].endswith(type_suffix) and r["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{len(found)} resources {type_suffix} *{name_suffix}"
    return found[0]["props"]


def _policy_json(props, edit):
    doc = json.loads(props["policy"])
    edit(doc)
    props["policy"] = json.dumps(doc)


def _add_world_ingress(res):
    sg = one(res, "securityGroup:SecurityGroup", "nodes-sg")
    res.append({"type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "name": "oops-ssh",
                "urn": "urn:pulumi:p5::aidc::aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule::oops-ssh",
                "id": "sgr-oops", "props": {"securityGroupId": sg["id"] if "id" in sg else sg.get("name"),
                                            "ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
                                            "cidrIpv4": "0.0.0.0/0"}})  # fmt: skip


def _drop(res, type_suffix, name_suffix=""):
    target = [r for r in res if r["type"].endswith(type_suffix) and r["name"].endswith(name_suffix)]
    assert len(target) == 1
    res.remove(target[0])


# rule -> one mutation of the p5 program's recorded resources that must make exactly it fire.
MUTATIONS = {
    "ec2-imdsv2-required": lambda r: one(r, "launchTemplate:LaunchTemplate")["metadataOptions"].update(
        httpTokens="optional"),
    "ec2-block-devices-encrypted": lambda r: one(r, "launchTemplate:LaunchTemplate")["blockDeviceMappings"][0][
        "ebs"].update(encrypted="false"),
    "sg-no-world-ingress": _add_world_ingress,
    "vpc-flow-logs": lambda r: _drop(r, "flowLog:FlowLog"),
    "s3-public-access-block": lambda r: one(r, "BucketPublicAccessBlock", "checkpoints-public-access-block").update(
        restrictPublicBuckets=False),
    "s3-sse-kms": lambda r: one(r, "BucketServerSideEncryptionConfiguration", "checkpoints-sse")["rules"][0][
        "applyServerSideEncryptionByDefault"].update(sseAlgorithm="AES256", kmsMasterKeyId=None),
    "s3-versioning": lambda r: one(r, "BucketVersioning", "checkpoints-versioning")["versioningConfiguration"].update(
        status="Suspended"),
    "s3-tls-only": lambda r: _policy_json(one(r, "BucketPolicy", "checkpoints-policy"),
                                          lambda d: d.update(Statement=[s for s in d["Statement"]
                                                                        if s.get("Effect") != "Deny"])),
    "kms-key-rotation": lambda r: one(r, "kms/key:Key").update(enableKeyRotation=False),
    "iam-no-admin-wildcard": lambda r: _policy_json(one(r, "rolePolicy:RolePolicy", "node-policy"),
                                                    lambda d: d["Statement"].append(
                                                        {"Effect": "Allow", "Action": "*", "Resource": "*"})),
    "cloudtrail-multi-region": lambda r: one(r, "trail:Trail").update(isMultiRegionTrail=False),
    "cloudtrail-log-validation": lambda r: one(r, "trail:Trail").update(enableLogFileValidation=False),
    "cloudtrail-kms": lambda r: one(r, "trail:Trail").pop("kmsKeyId"),
    "log-group-kms": lambda r: one(r, "logGroup:LogGroup").pop("kmsKeyId"),
    "fsx-lustre-cmk": lambda r: one(r, "lustreFileSystem:LustreFileSystem").pop("kmsKeyId"),
    "efa-security-group-self-reference": lambda r: _drop(r, "SecurityGroupEgressRule", "nodes-out-self"),
    # Taken off its Capacity Block (and reservation), the p5 EFA pool needs a cluster placement group.
    "efa-cluster-placement-group": lambda r: [one(r, "launchTemplate:LaunchTemplate").pop(key)
                                              for key in ("instanceMarketOptions", "capacityReservationSpecification")],
    "capacity-block-no-placement-group": lambda r: one(r, "launchTemplate:LaunchTemplate").update(
        placement={"groupName": "p5-train-pg", "availabilityZone": "us-east-1a"}),
    "capacity-block-targets-reservation": lambda r: one(r, "launchTemplate:LaunchTemplate").pop(
        "capacityReservationSpecification"),
    "efa-interfaces-match-instance-type": lambda r: one(r, "launchTemplate:LaunchTemplate")[
        "networkInterfaces"].append(dict(one(r, "launchTemplate:LaunchTemplate")["networkInterfaces"][-1],
                                         networkCardIndex=32)),
    "ec2-no-public-ip": lambda r: one(r, "launchTemplate:LaunchTemplate")["networkInterfaces"][0].update(
        associatePublicIpAddress="true"),
    "ebs-encryption-by-default": lambda r: one(r, "ebs/encryptionByDefault:EncryptionByDefault").update(
        enabled=False),
    "subnet-no-auto-public-ip": lambda r: one(r, "subnet:Subnet", "public-us-east-1a").update(
        mapPublicIpOnLaunch=True),
    "required-tags": lambda r: one(r, "kms/key:Key").update(tags={"Name": "untagged"}),
}


ODCR = {"type": "odcr", "reservationId": "cr-0123456789abcdef0", "reservationInstanceCount": 2,
        "reservationAvailabilityZone": "us-east-1a"}  # fmt: skip


@pytest.mark.parametrize("capacity", [
    {"type": "on-demand"},  # a new cluster group
    ODCR,  # outside any group: a new cluster group, as on-demand
    {**ODCR, "reservationPlacementGroup": "odcr-p5-pg"},  # the reservation's existing group
], ids=["on-demand", "odcr-no-group", "odcr-in-group"])  # fmt: skip
def test_every_capacity_types_placement_passes_the_pack(capacity):
    config = copy.deepcopy(load_stack_yaml("p5"))
    config["aidc:cluster"]["nodePools"][0]["capacity"] = capacity
    violations = evaluate(run_stack(config=config, stack_name="p5").engine_resources())
    assert [(v.rule, v.resource_name, v.message) for v in violations] == []


def test_a_kept_group_on_a_capacity_block_is_only_warned_about():
    """placementGroup: true (a stack deployed before Capacity Blocks lost their group) loads and
    deploys; the pack warns with the advisory rule and blocks nothing."""
    config = copy.deepcopy(load_stack_yaml("p5"))
    config["aidc:cluster"]["nodePools"][0]["placementGroup"] = True
    violations = evaluate(run_stack(config=config, stack_name="p5").engine_resources())
    assert {(v.rule, v.level) for v in violations} == {("capacity-block-no-placement-group", "advisory")}


def test_mutations_cover_most_rules():
    assert set(MUTATIONS) <= set(RULES_BY_NAME)
    assert len(MUTATIONS) >= 20


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_one_broken_setting_fires_exactly_its_rule(p5_resources, rule):
    resources = copy.deepcopy(p5_resources)
    MUTATIONS[rule](resources)
    fired = {v.rule for v in evaluate(resources)}
    assert fired == {rule}


def test_instance_type_allowlist_from_pack_config(p5_resources):
    config = {"instance-type-allowlist": {"allowedInstanceTypes": ["g6.*"]}}
    fired = {v.rule for v in evaluate(p5_resources, config=config)}
    assert fired == {"instance-type-allowlist"}
