"""Policy documents: scoped identity policies, a key policy the services can use, TLS-only buckets."""

from __future__ import annotations

import json

import pytest

from infra import iam_policies as pol

ACCOUNT = "111122223333"
BUCKET = "arn:aws:s3:::aidc-dev-checkpoints"
KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TRAIL = "arn:aws:cloudtrail:us-east-1:111122223333:trail/aidc-dev-dev"


def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


def _statement(doc: dict, sid: str) -> dict:
    matches = [s for s in doc["Statement"] if s.get("Sid") == sid]
    assert len(matches) == 1, f"expected one statement {sid!r}, got {len(matches)}"
    return matches[0]


def test_node_policy_is_scoped_to_bucket_and_key() -> None:
    doc = pol.node_inline_policy(BUCKET, KEY)
    json.dumps(doc)  # must be serializable as is
    assert doc["Version"] == "2012-10-17"
    allowed_resources = {BUCKET, f"{BUCKET}/*", KEY}
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in _listify(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), f"wildcard action {action}"
        assert set(_listify(statement["Resource"])) <= allowed_resources, statement
    assert _statement(doc, "ListCheckpointBucket")["Resource"] == [BUCKET]
    objects = _statement(doc, "ReadWriteCheckpoints")
    assert objects["Resource"] == [f"{BUCKET}/*"]
    assert set(objects["Action"]) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }
    key = _statement(doc, "UseClusterKey")
    assert key["Resource"] == [KEY]
    assert set(key["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*", "kms:Encrypt", "kms:DescribeKey"}


def test_key_policy_principals_and_conditions() -> None:
    doc = pol.kms_key_policy(ACCOUNT, "aws", "eu-west-1")
    json.dumps(doc)
    root = _statement(doc, "AccountRootAdministers")
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}

    trail = _statement(doc, "CloudTrailEncryptsLogs")
    assert trail["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert trail["Action"] == "kms:GenerateDataKey*"
    assert trail["Condition"]["StringLike"]["aws:SourceArn"] == f"arn:aws:cloudtrail:eu-west-1:{ACCOUNT}:trail/*"
    assert (
        trail["Condition"]["StringLike"]["kms:EncryptionContext:aws:cloudtrail:arn"]
        == f"arn:aws:cloudtrail:*:{ACCOUNT}:trail/*"
    )

    logs = _statement(doc, "CloudWatchLogsEncryptsLogGroups")
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:*"
    )

    asg_role = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    use = _statement(doc, "AutoScalingUsesKey")
    assert use["Condition"]["ArnLike"] == {"aws:PrincipalArn": asg_role}
    assert {"kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"} <= set(use["Action"])
    grant = _statement(doc, "AutoScalingAttachesVolumes")
    assert grant["Condition"]["ArnLike"] == {"aws:PrincipalArn": asg_role}
    assert grant["Action"] == "kms:CreateGrant"
    assert grant["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    assert "FsxLinkedBucketThroughS3" not in {s["Sid"] for s in doc["Statement"]}, "only with a bucket"


def test_key_policy_lets_fsx_use_the_linked_bucket_only_through_s3() -> None:
    doc = pol.kms_key_policy(ACCOUNT, "aws", "us-east-1", bucket_arn=BUCKET)
    fsx = _statement(doc, "FsxLinkedBucketThroughS3")
    assert fsx["Condition"]["StringEquals"] == {
        "kms:CallerAccount": ACCOUNT,
        "kms:ViaService": "s3.us-east-1.amazonaws.com",
    }
    assert fsx["Condition"]["StringLike"] == {"kms:EncryptionContext:aws:s3:arn": [BUCKET, f"{BUCKET}/*"]}
    assert fsx["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/s3.data-source.lustre.fsx.amazonaws.com/"
        "AWSServiceRoleForFSxS3Access_*"
    }
    assert "kms:CreateGrant" not in fsx["Action"]


def test_key_policy_wildcard_principals_are_pinned_to_one_role_of_this_account() -> None:
    """A ``"*"`` principal is only used with kms:CallerAccount = this account AND a role ARN match."""
    doc = pol.kms_key_policy(ACCOUNT, "aws", "us-east-1", bucket_arn=BUCKET)
    wildcard = [s for s in doc["Statement"] if s["Principal"] in ("*", {"AWS": "*"})]
    assert len(wildcard) == 3
    for statement in wildcard:
        assert statement["Condition"]["StringEquals"]["kms:CallerAccount"] == ACCOUNT
        role = statement["Condition"]["ArnLike"]["aws:PrincipalArn"]
        assert role.startswith(f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/"), role


def test_key_policy_only_root_may_administer() -> None:
    """Services get use actions only; nobody but the account root gets kms:* or key deletion."""
    doc = pol.kms_key_policy(ACCOUNT, "aws", "us-east-1")
    for statement in doc["Statement"]:
        actions = _listify(statement["Action"])
        if statement["Sid"] != "AccountRootAdministers":
            assert not any(a in ("*", "kms:*") or "Delete" in a or "Put" in a for a in actions), statement


def test_key_policy_in_the_china_partition() -> None:
    doc = pol.kms_key_policy(ACCOUNT, "aws-cn", "cn-north-1")
    assert _statement(doc, "AccountRootAdministers")["Principal"] == {"AWS": f"arn:aws-cn:iam::{ACCOUNT}:root"}
    assert _statement(doc, "CloudWatchLogsEncryptsLogGroups")["Principal"] == {
        "Service": "logs.cn-north-1.amazonaws.com.cn"
    }


def test_tls_only_bucket_policy_denies_plain_http() -> None:
    doc = pol.tls_only_bucket_policy(BUCKET)
    (statement,) = doc["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Resource"] == [BUCKET, f"{BUCKET}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_cloudtrail_bucket_policy_pins_the_trail() -> None:
    doc = pol.cloudtrail_bucket_policy(BUCKET, ACCOUNT, "aws", TRAIL)
    acl = _statement(doc, "CloudTrailAclCheck")
    assert acl["Action"] == "s3:GetBucketAcl" and acl["Resource"] == BUCKET
    assert acl["Condition"] == {"StringEquals": {"aws:SourceArn": TRAIL}}
    write = _statement(doc, "CloudTrailWrite")
    assert write["Resource"] == f"{BUCKET}/AWSLogs/{ACCOUNT}/*"
    assert write["Condition"]["StringEquals"] == {
        "s3:x-amz-acl": "bucket-owner-full-control",
        "aws:SourceArn": TRAIL,
    }
    for statement in doc["Statement"]:
        assert statement["Principal"] == {"Service": "cloudtrail.amazonaws.com"}


def test_merge_keeps_every_statement_in_order() -> None:
    merged = pol.merge_policies(
        pol.cloudtrail_bucket_policy(BUCKET, ACCOUNT, "aws", TRAIL), pol.tls_only_bucket_policy(BUCKET)
    )
    assert [s["Sid"] for s in merged["Statement"]] == ["CloudTrailAclCheck", "CloudTrailWrite", "DenyInsecureTransport"]
    assert merged["Version"] == "2012-10-17"


def test_trust_policies() -> None:
    ec2 = pol.ec2_trust_policy()
    (statement,) = ec2["Statement"]
    assert statement == {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}

    flow = pol.flow_log_trust_policy(ACCOUNT, "aws", "us-east-1")
    (statement,) = flow["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert statement["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc-flow-log/*"}


def test_flow_log_permissions_are_scoped_to_the_group() -> None:
    group = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aidc/dev/vpc-flow-logs"
    doc = pol.flow_log_permissions_policy(group)
    write = _statement(doc, "WriteFlowLogs")
    assert write["Resource"] == [group, f"{group}:*"]
    assert "logs:CreateLogGroup" not in write["Action"]
    assert _statement(doc, "FindLogGroup")["Resource"] == [f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:*"]
    for statement in doc["Statement"]:
        assert "*" not in _listify(statement["Resource"])


def test_arn_helpers() -> None:
    assert pol.bucket_arn("aws-us-gov", "b") == "arn:aws-us-gov:s3:::b"
    assert pol.trail_arn("aws", "us-east-1", ACCOUNT, "t") == f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/t"
    assert pol.managed_policy_arn("aws", pol.SSM_CORE_POLICY) == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    assert pol.arn_account(KEY) == ACCOUNT
    assert pol.arn_partition("arn:aws-cn:logs:cn-north-1:1:log-group:x") == "aws-cn"
    with pytest.raises(ValueError, match="is not an ARN"):
        pol.arn_account("not-an-arn")
