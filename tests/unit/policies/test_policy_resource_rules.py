"""Edge semantics of the resource rules, on the pure validators (the shapes the audit reuses)."""

from __future__ import annotations

import pytest
from policy_stacks import efa_launch_template, nic, policy_json

from infra.catalog import CATALOG, network_interface_layout
from policies import ec2, eks, iam, kms, network, storage, tags
from policies.capacity import capacity_block_placement_violations, capacity_block_violations, efa_layout_violations
from policies.runner import evaluate
from policies.s3 import public_grant_violations

LT, INSTANCE = ec2.LAUNCH_TEMPLATE, ec2.INSTANCE


@pytest.mark.parametrize(("resource_type", "props", "ok"), [
    (LT, {"metadataOptions": {"httpTokens": "required"}}, True),
    (LT, {"metadataOptions": {"httpTokens": "optional"}}, False),
    (LT, {}, False),
    (INSTANCE, {"metadataOptions": {"httpEndpoint": "disabled"}}, True),
    (INSTANCE, {"launchTemplate": {"id": "lt-1"}}, True),  # inherits the template's (checked there)
    (INSTANCE, {"launchTemplate": {"id": "lt-1"}, "metadataOptions": {"httpTokens": "optional"}}, False),
    (INSTANCE, {"instanceType": "t3.micro"}, False),
])
def test_imdsv2(resource_type, props, ok):
    assert (ec2.imdsv2_violations(resource_type, props) == []) is ok


@pytest.mark.parametrize(("encrypted", "ok"), [("true", True), (True, True), ("TRUE", True), ("false", False),
                                               (None, False), (False, False)])
def test_launch_template_ebs_encrypted_is_a_string_in_the_schema(encrypted, ok):
    props = {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": encrypted}}]}
    assert (ec2.block_device_violations(LT, props) == []) is ok


def test_launch_template_without_ebs_mapping_fails_and_instance_devices_are_all_checked():
    assert ec2.block_device_violations(LT, {"blockDeviceMappings": [{"deviceName": "/dev/sdb",
                                                                     "virtualName": "ephemeral0"}]})
    props = {"rootBlockDevice": {"encrypted": True},
             "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": True},
                                 {"deviceName": "/dev/sdg", "encrypted": False}]}
    found = ec2.block_device_violations(INSTANCE, props)
    assert len(found) == 1 and "/dev/sdg" in found[0]
    assert ec2.block_device_violations(INSTANCE, {"launchTemplate": {"id": "lt"}}) == []
    assert ec2.block_device_violations(INSTANCE, {})


SG, SG_RULE, INGRESS = network.SECURITY_GROUP, network.SG_RULE, network.SG_INGRESS_RULE


@pytest.mark.parametrize(("resource_type", "props", "allowed", "ok"), [
    (SG, {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]}]}, [], True),
    (SG, {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]}, [], False),
    (SG, {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/0"]}]}, [], False),
    (SG, {"egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}, [], True),
    (SG_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 443, "toPort": 443,
               "cidrBlocks": ["0.0.0.0/0"]}, [], False),
    (SG_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 443, "toPort": 443,
               "cidrBlocks": ["0.0.0.0/0"]}, [443], True),
    (SG_RULE, {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0,
               "cidrBlocks": ["0.0.0.0/0"]}, [443], False),
    (SG_RULE, {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]},
     [], True),
    (INGRESS, {"ipProtocol": "tcp", "fromPort": 0, "toPort": 65535, "cidrIpv6": "::/0"}, [443], False),
    (INGRESS, {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}, [443], True),
    # World-scale ranges are the world too: half of IPv6, all global unicast, a quarter of IPv4.
    (SG, {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/1"]}]}, [], False),
    (INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv6": "2000::/3"}, [], False),
    (INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "64.0.0.0/2"}, [], False),
    (INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv6": "2001:db8::/32"}, [], True),
    (INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.0.0.0/8"}, [], True),
])
def test_world_ingress(resource_type, props, allowed, ok):
    found = network.world_ingress_violations(resource_type, props, {"allowedPublicPorts": allowed})
    assert (found == []) is ok, found


@pytest.mark.parametrize(("props", "ok"), [
    ({"enableKeyRotation": True}, True),
    ({}, False),
    ({"customerMasterKeySpec": "RSA_2048", "keyUsage": "SIGN_VERIFY"}, True),  # AWS cannot rotate these
    ({"customerMasterKeySpec": "HMAC_256", "keyUsage": "GENERATE_VERIFY_MAC"}, True),
])
def test_kms_rotation(props, ok):
    assert (kms.key_rotation_violations(kms.KEY, props) == []) is ok


@pytest.mark.parametrize(("document", "admin", "service"), [
    ({"Effect": "Allow", "Action": "*", "Resource": "*"}, True, False),
    ({"Effect": "Allow", "Action": ["*:*"], "Resource": ["*"]}, True, False),
    ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b/*"}, False, False),
    ({"Effect": "Deny", "Action": "*", "Resource": "*"}, False, False),
    ({"Effect": "Allow", "Action": ["ec2:*", "s3:GetObject"], "Resource": "*"}, False, True),
])
def test_iam_wildcards(document, admin, service):
    props = {"policy": policy_json(document)}
    assert bool(iam.admin_wildcard_violations(iam.POLICY, props)) is admin
    assert bool(iam.service_wildcard_violations(iam.POLICY, props)) is service


def test_iam_accepts_parsed_documents_and_rejects_invalid_json():
    doc = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    assert iam.admin_wildcard_violations("aws:iam/rolePolicy:RolePolicy", {"policy": doc})
    found = iam.admin_wildcard_violations(iam.POLICY, {"policy": "{not json"})
    assert found and "not a JSON policy document" in found[0]
    role = {"inlinePolicies": [{"name": "admin", "policy": policy_json(doc["Statement"][0])}]}
    assert "inlinePolicies[admin]" in iam.admin_wildcard_violations(iam.ROLE, role)[0]


def test_lustre_scratch_needs_explicit_permission():
    scratch = {"deploymentType": "SCRATCH_2", "storageCapacity": 1200}
    assert storage.lustre_cmk_violations(storage.LUSTRE, scratch, {"allowScratch": False})
    assert storage.lustre_cmk_violations(storage.LUSTRE, scratch, {"allowScratch": True}) == []
    assert storage.lustre_cmk_violations(storage.LUSTRE, {"deploymentType": "PERSISTENT_2"})


@pytest.mark.parametrize(("vpc", "config", "ok"), [
    ({"endpointPublicAccess": False, "endpointPrivateAccess": True}, {}, True),
    ({}, {}, False),  # AWS default: public to 0.0.0.0/0
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}, {}, True),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}, {"forbidPublicEndpoint": True}, False),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}, {}, False),
])
def test_eks_endpoint(vpc, config, ok):
    assert (eks.endpoint_violations(eks.CLUSTER, {"vpcConfig": vpc}, config) == []) is ok


def test_eks_secrets_need_the_secrets_resource_and_a_key():
    enc = {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:us-east-1:1:key/k"}}
    assert eks.secrets_encryption_violations(eks.CLUSTER, {"encryptionConfig": enc}) == []
    assert eks.secrets_encryption_violations(eks.CLUSTER, {"encryptionConfig": {**enc, "resources": []}})


def test_required_tags_accept_provider_default_tags_and_asg_tag_lists():
    need = {"requiredTags": ["aidc:stack", "aidc:cluster"]}
    assert tags.required_tags_violations("aws:ec2/vpc:Vpc", {"tags": {"aidc:stack": "dev"}}, need)
    assert tags.required_tags_violations("aws:ec2/vpc:Vpc", {"tags": {"aidc:stack": "dev"}}, need,
                                         default_tags={"aidc:cluster": "c1"}) == []
    asg = {"tags": [{"key": "aidc:stack", "value": "dev"}, {"key": "aidc:cluster", "value": ""}]}
    assert "aidc:cluster" in tags.required_tags_violations(tags.ASG, asg, need)[0]


def test_efa_layout_against_the_catalog():
    assert efa_layout_violations(LT, efa_launch_template()["props"]) == []
    primary_efa_only = efa_launch_template(networkInterfaces=[nic(0, 0, "efa-only")])["props"]
    assert "primary" in efa_layout_violations(LT, primary_efa_only)[0]
    too_many = efa_launch_template(instanceType="g6e.24xlarge",
                                   networkInterfaces=[nic(0, 0, "efa"), nic(1, 0, "efa-only"),
                                                      nic(2, 0, "efa-only")])["props"]
    assert "at most 2" in efa_layout_violations(LT, too_many)[0]
    unknown_type = efa_launch_template(instanceType="p9.96xlarge")["props"]
    assert efa_layout_violations(LT, unknown_type) == []  # not in the catalog: not judged


def test_capacity_block_needs_its_reservation():
    block = {"instanceMarketOptions": {"marketType": "capacity-block"}}
    assert capacity_block_violations(LT, block)
    targeted = {**block, "capacityReservationSpecification": {
        "capacityReservationTarget": {"capacityReservationId": "cr-0abc"}}}
    assert capacity_block_violations(LT, targeted) == []


def test_instance_type_allowlist_patterns_and_node_groups():
    config = {"allowedInstanceTypes": ["p5.*", "t3.medium"]}
    assert ec2.instance_type_violations(LT, {"instanceType": "p5.48xlarge"}, config) == []
    assert ec2.instance_type_violations(LT, {"instanceType": "p4d.24xlarge"}, config)
    found = ec2.instance_type_violations(ec2.NODE_GROUP, {"instanceTypes": ["t3.medium", "m5.large"]}, config)
    assert len(found) == 1 and "m5.large" in found[0]
    asg = {"mixedInstancesPolicy": {"launchTemplate": {"overrides": [{"instanceType": "g5.48xlarge"}]}}}
    assert ec2.instance_type_violations(ec2.ASG, asg, config)
    assert ec2.instance_type_violations(LT, {"instanceType": "g6e.48xlarge"}) == []  # catalog default


@pytest.mark.parametrize("resource_type", [ec2.LAUNCH_CONFIGURATION, ec2.SPOT_REQUEST])
def test_instance_type_allowlist_covers_launch_configurations_and_spot_requests(resource_type):
    """Both launch instances of their own type: the cost guard must see them like an Instance."""
    rule = next(r for r in ec2.RULES if r.name == "instance-type-allowlist")
    assert resource_type in rule.resource_types
    found = ec2.instance_type_violations(resource_type, {"instanceType": "x2iedn.32xlarge"})
    assert len(found) == 1 and "'x2iedn.32xlarge'" in found[0], found


def test_admin_access_attachments_count_as_full_admin():
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"
    attach = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    assert iam.admin_wildcard_violations(attach, {"role": "r", "policyArn": admin})
    assert iam.admin_wildcard_violations(attach, {"role": "r", "policyArn": admin.replace("Administrator",
                                                                                          "ReadOnly")}) == []
    assert iam.admin_wildcard_violations(iam.ROLE, {"managedPolicyArns": [admin]})


@pytest.mark.parametrize(("resource_type", "props", "ok"), [
    ("aws:s3/bucket:Bucket", {"acl": "private"}, True),
    ("aws:s3/bucket:Bucket", {"acl": "public-read-write"}, False),
    ("aws:s3/bucketV2:BucketV2", {"grants": [{"type": "Group", "permissions": ["READ"],
                                              "uri": "http://acs.amazonaws.com/groups/global/AllUsers"}]}, False),
    ("aws:s3/bucketAcl:BucketAcl", {"accessControlPolicy": {"grants": [{"permission": "READ", "grantee": {
        "type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"}}]}}, False),
    ("aws:s3/bucketPolicy:BucketPolicy", {"policy": policy_json(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})}, False),
    ("aws:s3/bucketPolicy:BucketPolicy", {"policy": policy_json(
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
         "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}})}, True),
])
def test_s3_public_grants(resource_type, props, ok):
    assert (public_grant_violations(resource_type, props) == []) is ok


@pytest.mark.parametrize(("resource_type", "props", "ok"), [
    (INSTANCE, {"associatePublicIpAddress": True}, False),
    (INSTANCE, {"associatePublicIpAddress": False}, True),
    (LT, {"networkInterfaces": [{"deviceIndex": 0, "associatePublicIpAddress": "true"}]}, False),
    (LT, {"networkInterfaces": [{"deviceIndex": 0, "associatePublicIpAddress": "false"}]}, True),
])
def test_no_public_ip(resource_type, props, ok):
    assert (ec2.public_ip_violations(resource_type, props) == []) is ok


BLOCK = {"marketType": "capacity-block"}
BLOCK_TARGET = {"capacityReservationTarget": {"capacityReservationId": "cr-block"}}


@pytest.mark.parametrize(("resource_type", "props", "ok"), [
    (LT, {"instanceMarketOptions": BLOCK, "capacityReservationSpecification": BLOCK_TARGET}, True),
    (LT, {"instanceMarketOptions": BLOCK, "placement": {"availabilityZone": "us-east-1a"}}, True),
    (LT, {"instanceMarketOptions": BLOCK, "placement": {"groupName": "pg-train"}}, False),
    (LT, {"instanceMarketOptions": BLOCK, "placement": {"groupId": "pg-0123456789abcdef0"}}, False),
    (INSTANCE, {"instanceMarketOptions": BLOCK, "placementGroup": "pg-train"}, False),
    (INSTANCE, {"instanceMarketOptions": BLOCK}, True),
    # On-demand, spot and ODCR launches may use a group (ODCRs are judged by placement-capacity-compatible).
    (LT, {"placement": {"groupName": "pg-train"}}, True),
    (LT, {"instanceMarketOptions": {"marketType": "spot"}, "placement": {"groupName": "pg-train"}}, True),
    (LT, {"capacityReservationSpecification": BLOCK_TARGET, "placement": {"groupName": "pg-train"}}, True),
    (INSTANCE, {"placementGroup": "pg-train"}, True),
])
def test_capacity_block_names_no_placement_group(resource_type, props, ok):
    found = capacity_block_placement_violations(resource_type, props)
    assert (found == []) is ok, found
    if not ok:
        assert "InsufficientInstanceCapacity" in found[0] and "Remove the placement group" in found[0]


def _catalog_layout(instance_type: str, efa: bool) -> list[dict]:
    return [nic(s.network_card_index, s.device_index, s.kind) for s in network_interface_layout(instance_type, efa=efa)]


@pytest.mark.parametrize("instance_type", sorted(CATALOG))
def test_every_layout_the_catalog_generates_passes(instance_type):
    for efa in (True, False):
        props = efa_launch_template(instanceType=instance_type,
                                    networkInterfaces=_catalog_layout(instance_type, efa))["props"]
        assert efa_layout_violations(LT, props) == [], (instance_type, efa)


@pytest.mark.parametrize(("nics", "expected"), [
    # p4d has network cards 0-3.
    ([nic(0, 0, "interface"), nic(0, 1, "efa-only"), nic(7, 0, "efa-only")],
     "networkCardIndex 7, but p4d.24xlarge has 4 "),
    ([nic(0, 0, "interface"), nic(0, 1, "efa-only"), nic(0, 1, "efa-only")], "reuses network card 0 / device 1"),
    ([nic(0, 1, "efa-only"), nic(1, 0, "efa-only")], "no primary NIC"),
    ([nic(0, 0, "efa-only"), nic(1, 0, "efa-only")], "primary"),
])
def test_efa_layout_rejects_bad_slots(nics, expected):
    found = efa_layout_violations(LT, efa_launch_template(instanceType="p4d.24xlarge", networkInterfaces=nics)["props"])
    assert any(expected in f for f in found), found


def test_efa_layout_accepts_the_older_efa_primary_and_an_untyped_primary():
    older = [nic(0, 0, "efa"), nic(1, 0, "efa-only")]
    assert efa_layout_violations(LT, efa_launch_template(instanceType="p4d.24xlarge",
                                                         networkInterfaces=older)["props"]) == []
    untyped = {k: v for k, v in nic(0, 0, "interface").items() if k != "interfaceType"}
    assert efa_layout_violations(LT, efa_launch_template(instanceType="p4d.24xlarge", networkInterfaces=[
        untyped, nic(0, 1, "efa-only")])["props"]) == []


@pytest.mark.parametrize("document", [
    {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:s3:::secret/*"},
    {"Effect": "Allow", "NotAction": ["s3:DeleteBucket"], "NotResource": ["arn:aws:s3:::b"]},
])
def test_iam_not_action_and_not_resource_grant_everything_not_listed(document):
    found = iam.admin_wildcard_violations(iam.POLICY, {"policy": policy_json(document)})
    assert len(found) == 1 and "grants everything not listed" in found[0], found
    for key in ("NotAction", "NotResource"):
        assert (f"{key} {document.get(key)!r}" in found[0]) is (key in document)
    deny = {**document, "Effect": "Deny"}
    assert iam.admin_wildcard_violations(iam.POLICY, {"policy": policy_json(deny)}) == []


LC = "aws:ec2/launchConfiguration:LaunchConfiguration"
SPOT = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
SAFE_LAUNCH = {"metadataOptions": {"httpTokens": "required"}, "rootBlockDevice": {"encrypted": True},
               "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": True}],
               "associatePublicIpAddress": False}


@pytest.mark.parametrize("resource_type", [LC, SPOT])
@pytest.mark.parametrize(("rule", "edit"), [
    ("ec2-imdsv2-required", {"metadataOptions": {"httpTokens": "optional"}}),
    ("ec2-imdsv2-required", {"metadataOptions": None}),
    ("ec2-block-devices-encrypted", {"rootBlockDevice": {"encrypted": False}}),
    ("ec2-block-devices-encrypted", {"rootBlockDevice": None}),
    ("ec2-block-devices-encrypted", {"ebsBlockDevices": [{"deviceName": "/dev/sdg", "encrypted": False}]}),
    ("ec2-no-public-ip", {"associatePublicIpAddress": True}),
])
def test_launch_configurations_and_spot_requests_are_judged(resource_type, rule, edit):
    clean = [{"type": resource_type, "name": "nodes", "props": dict(SAFE_LAUNCH)}]
    assert [v.rule for v in evaluate(clean, {"required-tags": "disabled"})] == []
    props = {k: v for k, v in {**SAFE_LAUNCH, **edit}.items() if v is not None}
    found = evaluate([{"type": resource_type, "name": "nodes", "props": props}], {"required-tags": "disabled"})
    assert [v.rule for v in found] == [rule], found
    assert resource_type.rsplit(":", 1)[-1] in found[0].message


def test_spot_request_on_a_launch_template_inherits_its_settings():
    assert ec2.imdsv2_violations(SPOT, {"launchTemplate": {"id": "lt-1"}}) == []
    assert ec2.block_device_violations(SPOT, {"launchTemplate": {"id": "lt-1"}}) == []
    assert ec2.imdsv2_violations(LC, {}) and ec2.block_device_violations(LC, {})
