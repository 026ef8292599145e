"""Stack rules over several resources: EFA pools, placement vs capacity, S3 joins, flow logs.

The ``preview`` tests reproduce what the engine sends before anything exists: ids are unknown
(pulumi_policy's sentinel strings) and only ``propertyDependencies`` link the resources.
"""

from __future__ import annotations

import copy
import json

import pytest
from policy_stacks import BUCKET, TAGS, efa_launch_template, find, good_stack, nic, res, self_sg, tls_policy
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE as UNKNOWN

from policies.runner import evaluate


def rules_fired(stack, config=None) -> set[str]:
    return {v.rule for v in evaluate(stack, config)}


def only(stack, *names: str) -> list:
    return [r for r in stack if r["name"] in names]


GPU = ("private-a", "private-b", "efa-sg", "pg", "train-lt", "train-asg", "key")


def gpu_stack() -> list[dict]:
    return copy.deepcopy(only(good_stack(), *GPU))


# ----------------------------------------------------------------------------- EFA security group


def _rule(type_, name, **props):
    return res(type_, name, props)


SEPARATE_RULES = [
    _rule("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "efa-in", securityGroupId="sg-efa",
          ipProtocol="-1", referencedSecurityGroupId="sg-efa"),
    _rule("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "efa-out", securityGroupId="sg-efa",
          ipProtocol="-1", referencedSecurityGroupId="sg-efa"),
]


def _bare_sg(stack):
    sg = find(stack, "efa-sg")["props"]
    sg["ingress"], sg["egress"] = [], []


def test_efa_sg_self_reference_through_separate_vpc_rules():
    stack = gpu_stack()
    _bare_sg(stack)
    assert "efa-security-group-self-reference" in rules_fired(stack)
    assert "efa-security-group-self-reference" not in rules_fired(stack + copy.deepcopy(SEPARATE_RULES))
    # ingress alone is not enough: EFA needs the outbound direction too
    assert "efa-security-group-self-reference" in rules_fired(stack + copy.deepcopy(SEPARATE_RULES[:1]))


def test_efa_sg_self_reference_through_ec2_security_group_rules():
    stack = gpu_stack()
    _bare_sg(stack)
    rules = [_rule("aws:ec2/securityGroupRule:SecurityGroupRule", f"efa-{d}", type=d, securityGroupId="sg-efa",
                   protocol="-1", fromPort=0, toPort=0, self=True) for d in ("ingress", "egress")]
    assert "efa-security-group-self-reference" not in rules_fired(stack + rules)
    rules[1]["props"]["protocol"] = "tcp"  # only TCP: EFA's SRD traffic is not TCP
    assert "efa-security-group-self-reference" in rules_fired(stack + rules)


def test_efa_interface_without_security_group_fails():
    stack = gpu_stack()
    find(stack, "train-lt")["props"]["networkInterfaces"] = [nic(0, 0, "efa", sgs=())]
    found = [v for v in evaluate(stack) if v.rule == "efa-security-group-self-reference"]
    assert found and "no security group" in found[0].message


def test_efa_sg_in_another_stack_is_not_judged():
    stack = gpu_stack()
    find(stack, "train-lt")["props"]["networkInterfaces"] = [nic(0, 0, "efa", sgs=("sg-external",))]
    assert "efa-security-group-self-reference" not in rules_fired(stack)


# ----------------------------------------------------------------------------- AZ / placement group


def test_efa_pool_across_azs_via_launch_template_subnets():
    stack = gpu_stack()
    find(stack, "train-lt")["props"]["networkInterfaces"][2]["subnetId"] = "subnet-b"
    assert "efa-single-az" in rules_fired(stack)


def test_templates_sharing_a_pool_tag_form_one_pool():
    stack = gpu_stack()
    second = efa_launch_template("train-lt-b", "lt-train-b",
                                 networkInterfaces=[nic(0, 0, "interface", "subnet-b"), nic(0, 1, "efa-only",
                                                                                            "subnet-b")])
    assert "efa-single-az" in rules_fired(stack + [second])
    second["props"]["tags"] = {**TAGS, "aidc:pool": "infer"}
    assert "efa-single-az" not in rules_fired(stack + [second])


def test_efa_pool_placement_group_missing_or_split():
    stack = gpu_stack()
    del find(stack, "train-lt")["props"]["placement"]
    assert "efa-cluster-placement-group" in rules_fired(stack)
    stack = gpu_stack()
    find(stack, "train-asg")["props"]["placementGroup"] = "pg-other"
    found = [v.message for v in evaluate(stack) if v.rule == "efa-cluster-placement-group"]
    assert found and "2 placement groups" in found[0]


def test_capacity_block_pool_needs_no_placement_group():
    stack = gpu_stack()
    lt = find(stack, "train-lt")["props"]
    del lt["placement"]
    lt["instanceMarketOptions"] = {"marketType": "capacity-block"}
    lt["capacityReservationSpecification"] = {"capacityReservationTarget": {"capacityReservationId": "cr-block"}}
    assert rules_fired(stack) == set()


def test_odcr_pool_outside_any_group_needs_no_placement_group():
    # An ODCR created outside any group serves no cluster group: the pool rightly names none.
    stack = _targeting(gpu_stack(), "cr-elsewhere")
    del find(stack, "train-lt")["props"]["placement"]
    assert rules_fired(stack) == set()
    # Without a reservation the same pool still needs its group.
    del find(stack, "train-lt")["props"]["capacityReservationSpecification"]
    assert rules_fired(stack) == {"efa-cluster-placement-group"}


# ----------------------------------------------------------------------------- placement vs capacity

PG_ARN = "arn:aws:ec2:us-east-1:111122223333:placement-group/pg-train"


def _odcr(**props):
    base = {"instanceType": "p5.48xlarge", "availabilityZone": "us-east-1a", "instanceCount": 2,
            "instancePlatform": "Linux/UNIX", "placementGroupArn": PG_ARN, "tags": TAGS}
    base.update(props)
    return res("aws:ec2/capacityReservation:CapacityReservation", "odcr", base, "cr-1")


def _targeting(stack, target="cr-1", block=False):
    lt = find(stack, "train-lt")["props"]
    lt["capacityReservationSpecification"] = {"capacityReservationTarget": {"capacityReservationId": target}}
    if block:
        lt["instanceMarketOptions"] = {"marketType": "capacity-block"}
    return stack


def _capacity_findings(stack) -> list[str]:
    return [v.message for v in evaluate(stack) if v.rule == "placement-capacity-compatible"]


def test_odcr_in_the_pools_placement_group_passes():
    stack = gpu_stack()
    find(stack, "pg")["props"]["arn"] = PG_ARN
    assert _capacity_findings(_targeting(stack) + [_odcr()]) == []
    # matched by ARN text alone (the group's own ARN not recorded)
    assert _capacity_findings(_targeting(gpu_stack()) + [_odcr()]) == []


def test_odcr_mismatches_are_each_reported():
    no_group = _odcr(placementGroupArn=None)
    assert "has no placementGroupArn" in _capacity_findings(_targeting(gpu_stack()) + [no_group])[0]
    other_pg = _odcr(placementGroupArn="arn:aws:ec2:us-east-1:111122223333:placement-group/other")
    assert "does not launch into" in _capacity_findings(_targeting(gpu_stack()) + [other_pg])[0]
    wrong_type = _odcr(instanceType="p4d.24xlarge")
    assert "is for p4d.24xlarge" in _capacity_findings(_targeting(gpu_stack()) + [wrong_type])[0]
    assert "us-east-1b" in _capacity_findings(_targeting(gpu_stack()) + [_odcr(availabilityZone="us-east-1b")])[0]


def test_capacity_block_in_its_placement_group_passes_and_external_reservation_is_not_judged():
    # The block's AZ is checked by infra.config before deploy; the pack cannot see it.
    assert _capacity_findings(_targeting(gpu_stack(), "cr-block", block=True)) == []
    assert _capacity_findings(_targeting(gpu_stack(), "cr-elsewhere")) == []


# ----------------------------------------------------------------------------- preview: unknown ids


def _preview_gpu_stack(self_ref=True):
    """The GPU stack as the engine sends it in preview: every id unknown, links only via dependencies."""
    sg = self_sg()
    sg.pop("id")
    if not self_ref:
        sg["props"]["egress"] = sg["props"]["egress"][1:]
    lt = efa_launch_template()
    lt.pop("id")
    for n in lt["props"]["networkInterfaces"]:
        n["subnetId"], n["securityGroups"] = UNKNOWN, [UNKNOWN]
    lt["propertyDependencies"] = {"networkInterfaces": ["efa-sg", "private-a"], "placement": ["pg"]}
    asg = find(good_stack(), "train-asg")
    asg["props"]["launchTemplate"]["id"] = UNKNOWN
    asg["props"]["vpcZoneIdentifiers"] = [UNKNOWN]
    asg["propertyDependencies"] = {"launchTemplate": ["train-lt"], "vpcZoneIdentifiers": ["private-a"]}
    subnets = [r for r in good_stack() if r["name"] in ("private-a", "private-b")]
    for s in subnets:
        s.pop("id")
    pg = find(good_stack(), "pg")
    pg.pop("id")
    return [sg, lt, asg, pg, *subnets]


def test_preview_links_resources_through_property_dependencies():
    assert rules_fired(_preview_gpu_stack()) == set()
    assert rules_fired(_preview_gpu_stack(self_ref=False)) == {"efa-security-group-self-reference"}
    split = _preview_gpu_stack()
    split[2]["props"]["vpcZoneIdentifiers"] = [UNKNOWN, UNKNOWN]
    split[2]["propertyDependencies"]["vpcZoneIdentifiers"] = ["private-a", "private-b"]
    assert rules_fired(split) == {"efa-single-az"}
    spread = _preview_gpu_stack()
    spread[3]["props"]["strategy"] = "partition"
    assert rules_fired(spread) == {"efa-cluster-placement-group"}


# ----------------------------------------------------------------------------- S3 joins and flow logs


def _bucket_stack():
    return copy.deepcopy(only(good_stack(), "ckpt", "ckpt-pab", "ckpt-sse", "ckpt-versioning", "ckpt-policy"))


def test_bucket_settings_must_be_attached_to_the_right_bucket():
    stack = _bucket_stack() + [res("aws:s3/bucket:Bucket", "other", {"bucket": "other-bucket", "tags": TAGS},
                                   "other-bucket")]
    violations = evaluate(stack)
    assert {v.rule for v in violations} == {"s3-public-access-block", "s3-sse-kms", "s3-versioning", "s3-tls-only"}
    assert {v.resource_name for v in violations} == {"other"}


def test_v6_tokens_inline_settings_and_account_public_access_block():
    bucket = res("aws:s3/bucketV2:BucketV2", "legacy", {
        "bucket": "legacy", "tags": TAGS, "versioning": {"enabled": True},
        "serverSideEncryptionConfiguration": {"rule": {"applyServerSideEncryptionByDefault": {
            "sseAlgorithm": "aws:kms:dsse"}}},
        "policy": tls_policy("legacy")}, "legacy")
    account = res("aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock", "account-pab", {
        "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True})
    assert rules_fired([bucket, account]) == set()
    assert rules_fired([bucket]) == {"s3-public-access-block"}
    v2_sse = res("aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
                 "legacy-sse", {"bucket": "legacy", "rules": [{"applyServerSideEncryptionByDefault": {
                     "sseAlgorithm": "AES256"}}]})
    assert rules_fired([bucket, account, v2_sse]) == {"s3-sse-kms"}  # the attached resource wins


def test_tls_policy_details_and_unknown_policy_text():
    stack = _bucket_stack()
    find(stack, "ckpt-policy")["props"]["policy"] = find(stack, "ckpt-policy")["props"]["policy"].replace(
        '"aws:SecureTransport": "false"', '"aws:SecureTransport": "true"')
    assert rules_fired(stack) == {"s3-tls-only"}
    find(stack, "ckpt-policy")["props"]["policy"] = UNKNOWN  # preview: judged on update instead
    assert rules_fired(stack) == set()


def test_flow_log_for_one_vpc_does_not_cover_another():
    stack = copy.deepcopy(only(good_stack(), "vpc", "vpc-flow"))
    stack.append(res("aws:ec2/vpc:Vpc", "vpc-2", {"cidrBlock": "10.1.0.0/16", "tags": TAGS}, "vpc-2"))
    assert [v.resource_name for v in evaluate(stack) if v.rule == "vpc-flow-logs"] == ["vpc-2"]


def test_inline_rule_naming_the_groups_own_id_counts_as_self():
    # The shape a post-deploy audit builds from DescribeSecurityGroups (UserIdGroupPairs).
    stack = gpu_stack()
    sg = find(stack, "efa-sg")["props"]
    for block in sg["ingress"] + sg["egress"][:1]:
        del block["self"]
        block["securityGroups"] = ["sg-efa"]
    assert "efa-security-group-self-reference" not in rules_fired(stack)
    sg["egress"][0]["securityGroups"] = ["sg-other"]
    assert "efa-security-group-self-reference" in rules_fired(stack)


def _tls_resources(stack, resource, bucket_props=None):
    policy = find(stack, "ckpt-policy")["props"]
    doc = json.loads(policy["policy"])
    doc["Statement"][0]["Resource"] = resource
    policy["policy"] = json.dumps(doc)
    find(stack, "ckpt")["props"].update(bucket_props or {})
    return [v.message for v in evaluate(stack) if v.rule == "s3-tls-only"]


ARN = f"arn:aws:s3:::{BUCKET}"


@pytest.mark.parametrize(("resource", "bucket_props", "ok"), [
    ([ARN, f"{ARN}/*"], None, True),
    ("*", None, True),
    ("arn:aws:s3:::*", None, True),
    (f"{ARN}*", None, True),
    ([f"arn:aws-us-gov:s3:::{BUCKET}", f"arn:aws-us-gov:s3:::{BUCKET}/*"], {"arn": f"arn:aws-us-gov:s3:::{BUCKET}"},
     True),
    # The bucket's arn unknown in preview: its name (the bucket property) still identifies it.
    ([ARN, f"{ARN}/*"], {"arn": UNKNOWN}, True),
    (ARN, None, False),
    ([ARN], None, False),
    (f"{ARN}/*", None, False),
    ([ARN, f"{ARN}/logs/*"], None, False),
    (["arn:aws:s3:::other-bucket", "arn:aws:s3:::other-bucket/*"], None, False),
    # Neither name nor arn known: a bucket-level ARN and its /* are still required.
    ([ARN, f"{ARN}/*"], {"arn": UNKNOWN, "bucket": UNKNOWN}, True),
    (ARN, {"arn": UNKNOWN, "bucket": UNKNOWN}, False),
])
def test_tls_deny_covers_the_bucket_and_its_objects(resource, bucket_props, ok):
    found = _tls_resources(_bucket_stack(), resource, bucket_props)
    assert (found == []) is ok, found
    if not ok:
        assert "ckpt" in found[0] and "Resource" in found[0]


def test_tls_deny_may_be_split_over_two_statements():
    stack = _bucket_stack()
    policy = find(stack, "ckpt-policy")["props"]
    doc = json.loads(policy["policy"])
    doc["Statement"] = [dict(doc["Statement"][0], Resource=ARN), dict(doc["Statement"][0], Resource=f"{ARN}/*")]
    policy["policy"] = json.dumps(doc)
    assert "s3-tls-only" not in rules_fired(stack)
