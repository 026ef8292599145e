"""The real program, evaluated offline under Pulumi mocks: invariants of the core AWS stack.

Each test reads the resources the engine would receive (``infra.offline.run_stack``) and checks a
property that must hold for ANY stack: encryption with the CMK, no public ingress, scoped IAM,
tags, one NAT per AZ in ``per-az`` mode, ... Properties are read from ``RecordedResource.outputs``:
the mock's per-URN state, i.e. the resource's inputs plus mock-made ids/ARNs.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
from typing import Any

import pytest

from infra import outputs as out
from infra.config import ConfigError, load_stack_config
from infra.offline import MOCK_ACCOUNT_ID, OfflineRun, load_stack_yaml, run_stack
from infra.tags import TAG_CLUSTER, TAG_STACK

STACKS = ("dev", "p5", "inference")
WORLD = {"0.0.0.0/0", "::/0"}

T_BUCKET = "aws:s3/bucket:Bucket"
T_SUBNET = "aws:ec2/subnet:Subnet"
T_ROUTE = "aws:ec2/route:Route"
T_ASSOC = "aws:ec2/routeTableAssociation:RouteTableAssociation"
T_NAT = "aws:ec2/natGateway:NatGateway"
T_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
T_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
T_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


@functools.cache
def _run(stack: str) -> OfflineRun:
    return run_stack(stack)


def _run_with(stack: str, **cluster_changes: Any) -> OfflineRun:
    config = copy.deepcopy(load_stack_yaml(stack))
    config["aidc:cluster"].update(cluster_changes)
    return run_stack(config=config, stack_name=stack)


def _p(resource) -> dict[str, Any]:
    return resource.outputs


def _one(run: OfflineRun, token: str) -> dict[str, Any]:
    found = run.of_type(token)
    assert len(found) == 1, f"expected exactly one {token}, got {[r.name for r in found]}"
    return _p(found[0])


def _key_arn(run: OfflineRun) -> str:
    key = _one(run, "aws:kms/key:Key")
    assert run.outputs[out.KMS_KEY_ARN] == key["arn"]
    return key["arn"]


def _default_routes(run: OfflineRun) -> dict[str, dict[str, Any]]:
    """route table id -> its 0.0.0.0/0 route."""
    routes = [_p(r) for r in run.of_type(T_ROUTE) if _p(r).get("destinationCidrBlock") == "0.0.0.0/0"]
    by_table = {r["routeTableId"]: r for r in routes}
    assert len(by_table) == len(routes), "a route table has two default routes"
    return by_table


def _route_table_of(run: OfflineRun) -> dict[str, str]:
    """subnet id -> route table id (from the associations)."""
    return {_p(a)["subnetId"]: _p(a)["routeTableId"] for a in run.of_type(T_ASSOC) if _p(a).get("subnetId")}


def _cluster_azs(run: OfflineRun) -> list[str]:
    return list(run.config["aidc:cluster"]["availabilityZones"])


# --- recording sanity: the invariants below are only as good as what was recorded -------------


@pytest.mark.parametrize("stack", STACKS)
def test_recorded_inputs_belong_to_their_resource(stack: str) -> None:
    """Every record's inputs are a subset of its own per-URN state (guards the recorder itself)."""
    for r in _run(stack).resources:
        if r.custom:
            wrong = {k for k, v in r.inputs.items() if r.outputs.get(k) != v}
            assert not wrong, f"{r.type} {r.name}: recorded inputs {sorted(wrong)} belong to another resource"


# --- network ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_one_public_and_one_private_subnet_per_az(stack: str) -> None:
    run = _run(stack)
    azs = _cluster_azs(run)
    subnets = [_p(s) for s in run.of_type(T_SUBNET)]
    assert len(subnets) == 2 * len(azs)
    public, private = run.outputs[out.PUBLIC_SUBNET_IDS], run.outputs[out.PRIVATE_SUBNET_IDS]
    assert sorted(public) == sorted(azs) and sorted(private) == sorted(azs)
    assert len(set(public.values()) | set(private.values())) == 2 * len(azs)
    vpc = _one(run, "aws:ec2/vpc:Vpc")
    assert vpc["enableDnsSupport"] is True and vpc["enableDnsHostnames"] is True
    assert run.outputs[out.VPC_CIDR] == vpc["cidrBlock"]
    for s in subnets:
        assert s["mapPublicIpOnLaunch"] is False, "nodes are private; NAT gateways bring their own EIPs"

    table_of, default = _route_table_of(run), _default_routes(run)
    for az in azs:
        public_route = default[table_of[public[az]]]
        assert public_route.get("gatewayId") and not public_route.get("natGatewayId"), f"public {az} -> IGW"
        private_route = default[table_of[private[az]]]
        assert private_route.get("natGatewayId") and not private_route.get("gatewayId"), f"private {az} -> NAT"


@pytest.mark.parametrize(("mode", "azs"), [("single", 2), ("single", 3), ("per-az", 2), ("per-az", 3)])
def test_nat_gateways_per_mode(mode: str, azs: int) -> None:
    zones = [f"us-east-1{c}" for c in "abc"[:azs]]
    run = _run_with("dev", natMode=mode, availabilityZones=zones)
    nats = [_p(n) for n in run.of_type(T_NAT)]
    eips = run.of_type("aws:ec2/eip:Eip")
    expected = azs if mode == "per-az" else 1
    assert len(nats) == expected and len(eips) == expected
    public_ids = set(run.outputs[out.PUBLIC_SUBNET_IDS].values())
    assert {n["subnetId"] for n in nats} <= public_ids and len({n["subnetId"] for n in nats}) == expected
    table_of, default = _route_table_of(run), _default_routes(run)
    az_of_public = {sid: az for az, sid in run.outputs[out.PUBLIC_SUBNET_IDS].items()}
    nat_az = {n.id: az_of_public[_p(n)["subnetId"]] for n in run.of_type(T_NAT)}
    routed = {
        az: nat_az[default[table_of[sid]]["natGatewayId"]] for az, sid in run.outputs[out.PRIVATE_SUBNET_IDS].items()
    }
    # per-az: each private subnet leaves through the NAT of its own AZ (an AZ outage stays local);
    # single: all share the one NAT in the first AZ.
    assert routed == ({az: az for az in zones} if mode == "per-az" else dict.fromkeys(zones, zones[0]))


@pytest.mark.parametrize("stack", STACKS)
def test_s3_gateway_endpoint_on_every_private_route_table(stack: str) -> None:
    run = _run(stack)
    table_of = _route_table_of(run)
    private_tables = {table_of[sid] for sid in run.outputs[out.PRIVATE_SUBNET_IDS].values()}
    s3 = [_p(e) for e in run.of_type(T_ENDPOINT) if _p(e)["serviceName"].endswith(".s3")]
    assert len(s3) == 1
    assert s3[0]["vpcEndpointType"] == "Gateway"
    assert s3[0]["serviceName"] == f"com.amazonaws.{run.config['aws:region']}.s3"
    assert set(s3[0]["routeTableIds"]) == private_tables


@pytest.mark.parametrize("ssm_endpoints", [True, False])
def test_ssm_interface_endpoints_follow_the_flag(ssm_endpoints: bool) -> None:
    run = _run_with("dev", ssmEndpoints=ssm_endpoints)
    interface = [_p(e) for e in run.of_type(T_ENDPOINT) if _p(e)["vpcEndpointType"] == "Interface"]
    if not ssm_endpoints:
        assert interface == []
        return
    assert sorted(e["serviceName"].rsplit(".", 1)[1] for e in interface) == ["ec2messages", "ssm", "ssmmessages"]
    private = set(run.outputs[out.PRIVATE_SUBNET_IDS].values())
    sg_ids = {sid for e in interface for sid in e["securityGroupIds"]}
    assert len(sg_ids) == 1
    for e in interface:
        assert e["privateDnsEnabled"] is True and set(e["subnetIds"]) == private
    (endpoint_sg,) = sg_ids
    rules = [_p(r) for r in run.of_type(T_INGRESS) if _p(r)["securityGroupId"] == endpoint_sg]
    assert rules == [r for r in rules if r["ipProtocol"] == "tcp" and r["fromPort"] == r["toPort"] == 443]
    assert [r["cidrIpv4"] for r in rules] == [run.outputs[out.VPC_CIDR]]


@pytest.mark.parametrize("stack", STACKS)
def test_vpc_flow_logs_to_a_cmk_encrypted_group(stack: str) -> None:
    run = _run(stack)
    flow = _one(run, "aws:ec2/flowLog:FlowLog")
    group = _one(run, "aws:cloudwatch/logGroup:LogGroup")
    assert flow["vpcId"] == run.outputs[out.VPC_ID]
    assert flow["trafficType"] == "ALL"
    assert flow["logDestinationType"] == "cloud-watch-logs" and flow["logDestination"] == group["arn"]
    assert group["kmsKeyId"] == _key_arn(run)
    assert group["retentionInDays"] == run.config["aidc:cluster"].get("flowLogRetentionDays", 90)
    assert run.outputs[out.FLOW_LOG_GROUP] == group["name"]
    role = next(_p(r) for r in run.of_type("aws:iam/role:Role") if _p(r)["arn"] == flow["iamRoleArn"])
    trust = json.loads(role["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "vpc-flow-logs.amazonaws.com"}]


# --- security -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_cmk_rotates_and_has_an_alias(stack: str) -> None:
    run = _run(stack)
    key = _one(run, "aws:kms/key:Key")
    assert key["enableKeyRotation"] is True
    assert key["deletionWindowInDays"] == 30
    alias = _one(run, "aws:kms/alias:Alias")
    assert alias["name"] == f"alias/aidc-{run.config['aidc:cluster']['name']}"
    assert alias["targetKeyId"] == key["keyId"]
    statements = json.loads(key["policy"])["Statement"]
    assert {"AccountRootAdministers", "CloudTrailEncryptsLogs", "CloudWatchLogsEncryptsLogGroups"} <= {
        s["Sid"] for s in statements
    }
    for s in statements:  # a wildcard principal is only ever a role of this very account
        if s["Principal"] in ("*", {"AWS": "*"}):
            assert s["Condition"]["StringEquals"]["kms:CallerAccount"] == MOCK_ACCOUNT_ID, s["Sid"]
            assert s["Condition"]["ArnLike"]["aws:PrincipalArn"].startswith(f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/")
    (fsx,) = [s for s in statements if s["Sid"] == "FsxLinkedBucketThroughS3"]
    bucket = f"arn:aws:s3:::{run.outputs[out.CHECKPOINT_BUCKET]}"
    assert fsx["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"] == [bucket, f"{bucket}/*"]


@pytest.mark.parametrize("stack", STACKS)
def test_no_ingress_from_the_world(stack: str) -> None:
    run = _run(stack)
    for r in run.of_type(T_INGRESS):
        assert {_p(r).get("cidrIpv4"), _p(r).get("cidrIpv6")}.isdisjoint(WORLD), f"{r.name} opens to the world"
    for r in run.of_type("aws:ec2/securityGroupRule:SecurityGroupRule"):
        if _p(r)["type"] == "ingress":
            assert WORLD.isdisjoint(_p(r).get("cidrBlocks") or []) and WORLD.isdisjoint(
                _p(r).get("ipv6CidrBlocks") or []
            )
    for r in run.of_type("aws:ec2/securityGroup:SecurityGroup"):
        for rule in _p(r).get("ingress") or []:
            assert WORLD.isdisjoint((rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or [])), r.name


@pytest.mark.parametrize("stack", STACKS)
def test_node_security_group_allows_efa_both_ways(stack: str) -> None:
    run = _run(stack)
    sg = run.outputs[out.NODE_SECURITY_GROUP_ID]
    ingress = [_p(r) for r in run.of_type(T_INGRESS) if _p(r)["securityGroupId"] == sg]
    egress = [_p(r) for r in run.of_type(T_EGRESS) if _p(r)["securityGroupId"] == sg]

    def self_all(rules: list[dict]) -> bool:
        return any(r["ipProtocol"] == "-1" and r.get("referencedSecurityGroupId") == sg for r in rules)

    assert self_all(ingress) and self_all(egress), "EFA needs all traffic to and from the group itself"
    assert any(r["ipProtocol"] == "-1" and r.get("cidrIpv4") == "0.0.0.0/0" for r in egress)
    assert not [r for r in ingress if r.get("fromPort") == 22], "no SSH unless sshCidrs says so"
    lustre = {
        (r["fromPort"], r["toPort"])
        for r in ingress
        if r["ipProtocol"] == "tcp" and r.get("referencedSecurityGroupId") == sg
    }
    fsx_on = run.config.get("aidc:storage", {}).get("fsx", {}).get("enabled", False)
    assert lustre == ({(988, 988), (1018, 1023)} if fsx_on else set())


def test_ssh_only_from_the_configured_cidrs() -> None:
    config = copy.deepcopy(load_stack_yaml("dev"))
    config["aidc:access"] = {"sshCidrs": ["203.0.113.0/24", "2001:db8::/48"]}
    run = run_stack(config=config, stack_name="dev")
    sg = run.outputs[out.NODE_SECURITY_GROUP_ID]
    ssh = [_p(r) for r in run.of_type(T_INGRESS) if _p(r)["securityGroupId"] == sg and _p(r).get("fromPort") == 22]
    found = {(r.get("cidrIpv4") or r.get("cidrIpv6"), r["fromPort"], r["toPort"], r["ipProtocol"]) for r in ssh}
    assert found == {("203.0.113.0/24", 22, 22, "tcp"), ("2001:db8::/48", 22, 22, "tcp")}
    assert len(ssh) == 2


@pytest.mark.parametrize("stack", STACKS)
def test_iam_policies_are_scoped(stack: str) -> None:
    run = _run(stack)
    for r in run.of_type("aws:iam/rolePolicy:RolePolicy"):
        for s in json.loads(_p(r)["policy"])["Statement"]:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), f"{r.name}: {actions}"
            assert "*" not in resources, f"{r.name}: {resources}"

    role_arn = run.outputs[out.NODE_ROLE_ARN]
    node_role = next(_p(r) for r in run.of_type("aws:iam/role:Role") if _p(r)["arn"] == role_arn)
    trust = json.loads(node_role["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]
    node_policies = [_p(r) for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if _p(r)["role"] == node_role["name"]]
    assert len(node_policies) == 1
    bucket = f"arn:aws:s3:::{run.outputs[out.CHECKPOINT_BUCKET]}"
    resources = {res for s in json.loads(node_policies[0]["policy"])["Statement"] for res in s["Resource"]}
    assert resources == {bucket, f"{bucket}/*", _key_arn(run)}
    attached = [
        _p(a)["policyArn"]
        for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if _p(a)["role"] == node_role["name"]
    ]
    assert attached == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    profile = _one(run, "aws:iam/instanceProfile:InstanceProfile")
    assert profile["role"] == node_role["name"] and run.outputs[out.INSTANCE_PROFILE_NAME] == profile["name"]


# --- storage and audit ----------------------------------------------------------------------------


def _bucket_config(run: OfflineRun, token: str, bucket: str) -> dict[str, Any]:
    found = [_p(r) for r in run.of_type(token) if _p(r)["bucket"] == bucket]
    assert len(found) == 1, f"bucket {bucket}: expected one {token}, got {len(found)}"
    return found[0]


@pytest.mark.parametrize("stack", STACKS)
def test_every_bucket_is_cmk_encrypted_versioned_private_and_tls_only(stack: str) -> None:
    run = _run(stack)
    key = _key_arn(run)
    buckets = [_p(b) for b in run.of_type(T_BUCKET)]
    names = {b["bucket"] for b in buckets}
    assert run.outputs[out.CHECKPOINT_BUCKET] in names and len(buckets) == 2, "checkpoint + trail bucket"
    for b in buckets:
        name = b["bucket"]
        (rule,) = _bucket_config(
            run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", name
        )["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key}
        assert rule["bucketKeyEnabled"] is True
        versioning = _bucket_config(run, "aws:s3/bucketVersioning:BucketVersioning", name)
        assert versioning["versioningConfiguration"]["status"] == "Enabled"
        pab = _bucket_config(run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)
        for setting in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            assert pab[setting] is True, f"{name}: {setting}"
        policy = json.loads(_bucket_config(run, "aws:s3/bucketPolicy:BucketPolicy", name)["policy"])
        arn = f"arn:aws:s3:::{name}"
        assert {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        } in policy["Statement"]
        for s in policy["Statement"]:
            assert s["Effect"] == "Deny" or s["Principal"] != "*", f"{name}: public Allow"


@pytest.mark.parametrize("stack", STACKS)
def test_checkpoint_lifecycle(stack: str) -> None:
    run = _run(stack)
    bucket = run.outputs[out.CHECKPOINT_BUCKET]
    (rule,) = _bucket_config(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", bucket)["rules"]
    assert rule["status"] == "Enabled"
    days = run.config.get("aidc:storage", {}).get("noncurrentVersionDays", 30)
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == days
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7


@pytest.mark.parametrize("stack", STACKS)
def test_every_storage_resource_uses_the_cmk(stack: str) -> None:
    """Log groups, FSx, the trail, account EBS default and node volumes: all with the one CMK."""
    run = _run(stack)
    key = _key_arn(run)
    for r in run.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert _p(r)["kmsKeyId"] == key, r.name
    for r in run.of_type("aws:fsx/lustreFileSystem:LustreFileSystem"):
        assert _p(r)["kmsKeyId"] == key, r.name
    for r in run.of_type("aws:cloudtrail/trail:Trail"):
        assert _p(r)["kmsKeyId"] == key, r.name
    for r in run.of_type("aws:ebs/defaultKmsKey:DefaultKmsKey"):
        assert _p(r)["keyArn"] == key, r.name
    for r in run.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        for mapping in _p(r).get("blockDeviceMappings") or []:
            ebs = mapping["ebs"]
            assert str(ebs["encrypted"]).lower() == "true" and ebs["kmsKeyId"] == key, r.name
    ebs_default = run.config.get("aidc:storage", {}).get("ebsEncryptionByDefault", False)
    assert len(run.of_type("aws:ebs/encryptionByDefault:EncryptionByDefault")) == int(ebs_default)
    assert len(run.of_type("aws:ebs/defaultKmsKey:DefaultKmsKey")) == int(ebs_default)


def test_lustre_in_the_training_az_linked_to_the_bucket() -> None:
    run = _run("p5")
    fs = _one(run, "aws:fsx/lustreFileSystem:LustreFileSystem")
    cfg = load_stack_config({k[5:]: v for k, v in run.config.items() if k.startswith("aidc:")}, stack="p5")
    fsx = cfg.storage.fsx
    assert fs["deploymentType"] == "PERSISTENT_2"
    assert fs["subnetIds"] == run.outputs[out.PRIVATE_SUBNET_IDS][cfg.fsx_az]
    assert fs["securityGroupIds"] == [run.outputs[out.NODE_SECURITY_GROUP_ID]]
    assert (fs["storageCapacity"], fs["perUnitStorageThroughput"]) == (
        fsx.storage_capacity_gib,
        fsx.per_unit_storage_throughput,
    )
    assert fs["dataCompressionType"] == "LZ4" and fs["fileSystemTypeVersion"] == "2.15"
    assert run.outputs[out.FSX_DNS_NAME] == fs["dnsName"] and run.outputs[out.FSX_MOUNT_NAME] == fs["mountName"]
    dra = _one(run, "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation")
    assert dra["dataRepositoryPath"] == f"s3://{run.outputs[out.CHECKPOINT_BUCKET]}/"
    assert dra["fileSystemPath"] == fsx.file_system_path
    events = ["NEW", "CHANGED", "DELETED"]
    assert dra["s3"] == {"autoImportPolicy": {"events": events}, "autoExportPolicy": {"events": events}}
    assert _run("dev").of_type("aws:fsx/lustreFileSystem:LustreFileSystem") == []


@pytest.mark.parametrize("stack", STACKS)
def test_cloudtrail_multi_region_validated_encrypted(stack: str) -> None:
    run = _run(stack)
    trail = _one(run, "aws:cloudtrail/trail:Trail")
    assert trail["isMultiRegionTrail"] is True
    assert trail["enableLogFileValidation"] is True
    assert trail["includeGlobalServiceEvents"] is True
    assert run.outputs[out.TRAIL_NAME] == trail["name"]
    bucket = trail["s3BucketName"]
    assert bucket != run.outputs[out.CHECKPOINT_BUCKET], "the trail has its own bucket"
    statements = json.loads(_bucket_config(run, "aws:s3/bucketPolicy:BucketPolicy", bucket)["policy"])["Statement"]
    writes = [s for s in statements if s.get("Sid") == "CloudTrailWrite"]
    assert [w["Condition"]["StringEquals"]["aws:SourceArn"] for w in writes] == [trail["arn"]]


# --- tags -------------------------------------------------------------------------------------------


@functools.cache
def _accepts_tags(token: str) -> bool:
    """Whether the pulumi_aws class behind a type token takes a ``tags`` argument."""
    package, module_path, class_name = token.split(":")
    assert package == "aws", token
    module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    cls = getattr(module, class_name)  # AttributeError: unknown token -> the test fails, never skips
    return "tags" in inspect.signature(cls._internal_init).parameters


def _tag_map(tags: Any) -> dict[str, str]:
    if isinstance(tags, list):  # Auto Scaling groups: [{key, value, propagateAtLaunch}]
        return {t["key"]: t["value"] for t in tags}
    return dict(tags or {})


@pytest.mark.parametrize("stack", STACKS)
def test_every_taggable_resource_carries_stack_and_cluster(stack: str) -> None:
    run = _run(stack)
    cluster = run.config["aidc:cluster"]["name"]
    user_tags = run.config.get("aidc:tags", {})
    checked = 0
    for r in run.resources:
        if not r.custom or not _accepts_tags(r.type):
            continue
        tags = _tag_map(_p(r).get("tags"))
        assert tags.get(TAG_STACK) == stack and tags.get(TAG_CLUSTER) == cluster, f"{r.type} {r.name}: {tags}"
        assert user_tags.items() <= tags.items(), f"{r.type} {r.name} lacks the user tags"
        checked += 1
    assert checked >= 30, "the core stack alone has more than 30 taggable resources"


def test_untaggable_types_are_recognised() -> None:
    assert _accepts_tags("aws:ec2/vpc:Vpc") and _accepts_tags("aws:kms/key:Key")
    assert not _accepts_tags("aws:ec2/route:Route") and not _accepts_tags("aws:kms/alias:Alias")


# --- bad config ---------------------------------------------------------------------------------------


def _dev_config_with(section: str, **changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(load_stack_yaml("dev"))
    config.setdefault(f"aidc:{section}", {}).update(changes)
    return config


@pytest.mark.parametrize(
    ("section", "changes", "message"),
    [
        (
            "cluster",
            {"vpcCidr": "8.8.0.0/16"},
            "aidc:cluster.vpcCidr: '8.8.0.0/16' is not in a private range (10/8, 172.16/12, 192.168/16)",
        ),
        (
            "cluster",
            {"vpcCidr": "10.0.0.1/16"},
            "aidc:cluster.vpcCidr: '10.0.0.1/16' is not an IPv4 network in CIDR form (10.0.0.1/16 has host bits set)",
        ),
        (
            "cluster",
            {"availabilityZones": ["us-east-1a", "us-east-1a"]},
            "aidc:cluster.availabilityZones: ['us-east-1a', 'us-east-1a'] lists an availability zone twice",
        ),
        (
            "cluster",
            {"flowLogRetentionDays": 0},
            "aidc:cluster.flowLogRetentionDays: 0 is not a CloudWatch Logs retention; allowed: [1, 3, 5, 7, 14, 30, "
            "60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]",
        ),
        (
            "access",
            {"sshCidrs": ["::/0"]},
            "aidc:access.sshCidrs: '::/0' opens SSH to the whole internet; use SSM or a narrow CIDR",
        ),
        (
            "access",
            {"sshCidrs": ["10.0.0.0/7"]},
            "aidc:access.sshCidrs: '10.0.0.0/7' is broader than /8; give the CIDRs you really connect from",
        ),
        (
            "storage",
            {"fsx": {"perUnitStorageThroughput": 300}},
            "aidc:storage.fsx.perUnitStorageThroughput: 300 is not allowed for PERSISTENT_2; "
            "allowed: [125, 250, 500, 1000]",
        ),
        (
            "storage",
            {"noncurrentVersionDays": 0},
            "aidc:storage.noncurrentVersionDays: 0: Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_core_config_names_the_key(section: str, changes: dict, message: str) -> None:
    config = _dev_config_with(section, **changes)
    raw = {k[5:]: v for k, v in config.items() if k.startswith("aidc:")}
    with pytest.raises(ConfigError) as err:
        load_stack_config(raw, stack="dev")
    assert str(err.value) == message


def test_bad_config_stops_the_program_before_any_resource() -> None:
    """Through the real program: the same one-line message, and nothing declared."""
    config = _dev_config_with("access", sshCidrs=["0.0.0.0/0"])
    with pytest.raises(ConfigError) as err:
        run_stack(config=config, stack_name="dev")
    assert (
        str(err.value) == "aidc:access.sshCidrs: '0.0.0.0/0' opens SSH to the whole internet; use SSM or a narrow CIDR"
    )


def test_trail_bucket_name_is_valid_and_keeps_account_and_region() -> None:
    from infra.audit import trail_bucket_name

    name = trail_bucket_name("a" * 24, "Prod_Stack.v2-with-a-long-name", "123456789012", "ap-southeast-2")
    assert len(name) <= 63 and name.startswith("aidc-trail-123456789012-ap-southeast-2-")
    assert all(c.islower() or c.isdigit() or c == "-" for c in name) and not name.endswith("-")
    assert _one(_run("dev"), "aws:cloudtrail/trail:Trail")["s3BucketName"] == (
        f"aidc-trail-{MOCK_ACCOUNT_ID}-us-east-1-dev-dev"
    )
