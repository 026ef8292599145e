"""Compliant reference stack in engine shape (camelCase props as pulumi-aws sends them).

Every rule passes on ``good_stack()``; the mutation tests change one setting and expect exactly
that rule to fire. Ids stand in for what mocks return, so references resolve by value; the
preview tests drop them and link through ``propertyDependencies`` instead.
"""

from __future__ import annotations

import json
from typing import Any

TAGS = {"aidc:stack": "dev", "aidc:cluster": "c1"}
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/key-1"
BUCKET = "aidc-dev-ckpt"


def res(type_: str, name: str, props: dict[str, Any], id_: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "name": name, "props": props}
    if id_ is not None:
        out["id"] = id_
    out.update(extra)
    return out


def policy_json(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def tls_policy(bucket: str = BUCKET) -> str:
    return policy_json({
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })


def nic(card: int, device: int, kind: str, subnet: str = "subnet-a", sgs: tuple[str, ...] = ("sg-efa",)) -> dict:
    return {"networkCardIndex": card, "deviceIndex": device, "interfaceType": kind, "subnetId": subnet,
            "securityGroups": list(sgs), "deleteOnTermination": "true"}


def efa_launch_template(name: str = "train-lt", id_: str = "lt-train", **overrides: Any) -> dict[str, Any]:
    props = {
        "instanceType": "p5.48xlarge",
        "imageId": "ami-0123456789abcdef0",
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1},
        "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {
            "volumeSize": 500, "volumeType": "gp3", "encrypted": "true", "kmsKeyId": KEY_ARN,
            "deleteOnTermination": "true"}}],
        "networkInterfaces": [nic(0, 0, "interface"), nic(0, 1, "efa-only"), nic(1, 0, "efa-only")],
        "placement": {"groupName": "pg-train"},
        "tags": {**TAGS, "aidc:pool": "train"},
    }
    props.update(overrides)
    return res("aws:ec2/launchTemplate:LaunchTemplate", name, props, id_)


def self_sg(name: str = "efa-sg", id_: str = "sg-efa") -> dict[str, Any]:
    all_self = {"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}
    return res("aws:ec2/securityGroup:SecurityGroup", name, {
        "vpcId": "vpc-1", "description": "EFA all traffic within the group",
        "ingress": [dict(all_self)],
        "egress": [dict(all_self), {"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}],
        "tags": TAGS,
    }, id_)


def good_stack() -> list[dict[str, Any]]:
    """A small but complete GPU stack that every rule accepts."""
    return [
        res("aws:kms/key:Key", "key", {"enableKeyRotation": True, "arn": KEY_ARN, "tags": TAGS}, "key-1"),
        res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16", "tags": TAGS}, "vpc-1"),
        res("aws:ec2/flowLog:FlowLog", "vpc-flow", {"vpcId": "vpc-1", "trafficType": "ALL",
                                                    "logDestination": "arn:aws:logs:us-east-1:1:log-group:flow",
                                                    "tags": TAGS}),
        res("aws:cloudwatch/logGroup:LogGroup", "flow-logs", {"kmsKeyId": KEY_ARN, "retentionInDays": 30,
                                                              "tags": TAGS}),
        res("aws:ec2/subnet:Subnet", "private-a", {"vpcId": "vpc-1", "cidrBlock": "10.0.0.0/20",
                                                   "availabilityZone": "us-east-1a", "mapPublicIpOnLaunch": False,
                                                   "tags": TAGS}, "subnet-a"),
        res("aws:ec2/subnet:Subnet", "private-b", {"vpcId": "vpc-1", "cidrBlock": "10.0.16.0/20",
                                                   "availabilityZone": "us-east-1b", "tags": TAGS}, "subnet-b"),
        self_sg(),
        res("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "lustre-988", {
            "securityGroupId": "sg-efa", "ipProtocol": "tcp", "fromPort": 988, "toPort": 988,
            "cidrIpv4": "10.0.0.0/16"}),
        res("aws:ec2/placementGroup:PlacementGroup", "pg", {"name": "pg-train", "strategy": "cluster",
                                                           "tags": TAGS}, "pg-train"),
        efa_launch_template(),
        res("aws:autoscaling/group:Group", "train-asg", {
            "minSize": 2, "maxSize": 2, "desiredCapacity": 2, "vpcZoneIdentifiers": ["subnet-a"],
            "launchTemplate": {"id": "lt-train", "version": "$Latest"},
            "tags": [{"key": k, "value": v, "propagateAtLaunch": True} for k, v in TAGS.items()]}),
        res("aws:ebs/volume:Volume", "scratch", {"availabilityZone": "us-east-1a", "size": 100,
                                                 "encrypted": True, "kmsKeyId": KEY_ARN, "tags": TAGS}),
    ] + _data_and_identity()


def _data_and_identity() -> list[dict[str, Any]]:
    return [
        res("aws:s3/bucket:Bucket", "ckpt", {"bucket": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}", "tags": TAGS},
            BUCKET),
        res("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "ckpt-pab", {
            "bucket": BUCKET, "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
            "restrictPublicBuckets": True}),
        res("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "ckpt-sse", {
            "bucket": BUCKET, "rules": [{"applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN}, "bucketKeyEnabled": True}]}),
        res("aws:s3/bucketVersioning:BucketVersioning", "ckpt-versioning", {
            "bucket": BUCKET, "versioningConfiguration": {"status": "Enabled"}}),
        res("aws:s3/bucketPolicy:BucketPolicy", "ckpt-policy", {"bucket": BUCKET, "policy": tls_policy()}),
        res("aws:cloudtrail/trail:Trail", "trail", {
            "s3BucketName": BUCKET, "isMultiRegionTrail": True, "enableLogFileValidation": True,
            "enableLogging": True, "kmsKeyId": KEY_ARN, "tags": TAGS}),
        res("aws:iam/role:Role", "node-role", {
            "assumeRolePolicy": policy_json({"Effect": "Allow", "Action": "sts:AssumeRole",
                                             "Principal": {"Service": "ec2.amazonaws.com"}}),
            "inlinePolicies": [{"name": "ckpt", "policy": policy_json({
                "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::{BUCKET}/*"})}],
            "tags": TAGS}),
        res("aws:iam/rolePolicy:RolePolicy", "node-describe", {"role": "node-role", "policy": policy_json(
            {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"})}),
        res("aws:fsx/lustreFileSystem:LustreFileSystem", "lustre", {
            "subnetIds": ["subnet-a"], "deploymentType": "PERSISTENT_2", "perUnitStorageThroughput": 125,
            "storageCapacity": 1200, "kmsKeyId": KEY_ARN, "securityGroupIds": ["sg-efa"], "tags": TAGS}),
        res("aws:efs/fileSystem:FileSystem", "home", {"encrypted": True, "kmsKeyId": KEY_ARN, "tags": TAGS}),
        res("aws:eks/cluster:Cluster", "eks", {
            "roleArn": "arn:aws:iam::111122223333:role/eks",
            "vpcConfig": {"subnetIds": ["subnet-a", "subnet-b"], "endpointPrivateAccess": True,
                          "endpointPublicAccess": False},
            "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": KEY_ARN}},
            "enabledClusterLogTypes": ["api", "audit", "authenticator"],
            "tags": TAGS}),
    ]


def find(stack: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in stack if r["name"] == name)


def drop(stack: list[dict[str, Any]], name: str) -> None:
    stack.remove(find(stack, name))
