"""IAM, KMS key and bucket policy documents (pure: no Pulumi import).

Every builder takes plain strings and returns a JSON-ready dict, so the documents are unit-tested
directly and the components only ``json.dumps`` them once their inputs resolve. Identity policies
never use a ``"*"`` action or resource: the node role may touch the checkpoint bucket and the CMK,
nothing else. (In a KMS *key* policy ``"Resource": "*"`` means "this key" - the only form AWS
accepts there.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Policy = dict[str, Any]
VERSION = "2012-10-17"

#: AWS managed policy that lets the SSM agent register the node (Session Manager, no SSH needed).
SSM_CORE_POLICY = "AmazonSSMManagedInstanceCore"
NODE_S3_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
NODE_KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*", "kms:Encrypt", "kms:DescribeKey")
#: What a service needs to encrypt/decrypt with the CMK (no grants, no administration).
_KMS_USE = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey")


def _doc(*statements: Policy) -> Policy:
    return {"Version": VERSION, "Statement": list(statements)}


def dns_suffix(partition: str) -> str:
    """Service endpoint suffix of a partition (China regions use ``amazonaws.com.cn``)."""
    return "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"


def managed_policy_arn(partition: str, policy_name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{policy_name}"


def bucket_arn(partition: str, bucket_name: str) -> str:
    return f"arn:{partition}:s3:::{bucket_name}"


def trail_arn(partition: str, region: str, account_id: str, trail_name: str) -> str:
    return f"arn:{partition}:cloudtrail:{region}:{account_id}:trail/{trail_name}"


def autoscaling_service_role_arn(partition: str, account_id: str) -> str:
    return (
        f"arn:{partition}:iam::{account_id}:role/aws-service-role/autoscaling.amazonaws.com/"
        "AWSServiceRoleForAutoScaling"
    )


def service_trust_policy(service: str, conditions: Mapping[str, Any] | None = None) -> Policy:
    """Trust policy letting one AWS service principal assume the role."""
    statement: Policy = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if conditions:
        statement["Condition"] = dict(conditions)
    return _doc(statement)


def ec2_trust_policy() -> Policy:
    """Node role trust: only EC2 instances (through the instance profile) assume it."""
    return service_trust_policy("ec2.amazonaws.com")


def node_inline_policy(bucket_arn: str, kms_key_arn: str) -> Policy:
    """The node role's own permissions: the checkpoint bucket and the CMK, nothing else."""
    return _doc(
        {"Sid": "ListCheckpointBucket", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn]},
        {
            "Sid": "ReadWriteCheckpoints",
            "Effect": "Allow",
            "Action": list(NODE_S3_OBJECT_ACTIONS),
            "Resource": [f"{bucket_arn}/*"],
        },
        {"Sid": "UseClusterKey", "Effect": "Allow", "Action": list(NODE_KMS_ACTIONS), "Resource": [kms_key_arn]},
    )


def fsx_s3_service_role_pattern(partition: str, account_id: str) -> str:
    """ARN pattern of the per-file-system roles FSx uses to read/write a linked S3 bucket."""
    return (
        f"arn:{partition}:iam::{account_id}:role/aws-service-role/s3.data-source.lustre.fsx.amazonaws.com/"
        "AWSServiceRoleForFSxS3Access_*"
    )


def _role_in_account(sid: str, actions: Any, account_id: str, role_arn: str, **conditions: Any) -> Policy:
    """Allow one service-linked role of this account, matched by ``aws:PrincipalArn``.

    KMS rejects a key policy that names a role which does not exist yet. The Auto Scaling role
    appears only after the account's first Auto Scaling group, and the FSx role's name carries the
    file system id, which exists only after the key. Matching the ARN in a condition (the pattern
    of AWS managed keys: any principal, pinned to this account by ``kms:CallerAccount``) works in
    a fresh account and grants nobody else.
    """
    condition: dict[str, dict[str, Any]] = {
        "StringEquals": {"kms:CallerAccount": account_id},
        "ArnLike": {"aws:PrincipalArn": role_arn},
    }
    for operator, values in conditions.items():
        condition.setdefault(operator, {}).update(values)
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": actions,
        "Resource": "*",
        "Condition": condition,
    }


def kms_key_policy(account_id: str, partition: str, region: str, *, bucket_arn: str | None = None) -> Policy:
    """Key policy of the cluster CMK.

    - the account root administers the key, which delegates use to IAM policies (the node role's
      inline policy, deployers) - the AWS default that prevents an unmanageable key;
    - CloudTrail may encrypt trails of this account (``aws:SourceArn`` and the CloudTrail
      encryption context pin it to this account's trails);
    - CloudWatch Logs in this region may use it for this account's log groups (VPC flow logs);
    - the EC2 Auto Scaling service-linked role may use it and create grants for the volumes it
      launches, else Auto Scaling groups fail to start instances with CMK-encrypted EBS volumes;
    - with ``bucket_arn`` (the checkpoint bucket): FSx's S3 access roles may use it through S3
      for that bucket only, else the Lustre data repository association cannot import/export
      objects of a bucket encrypted with this key.
    """
    root = f"arn:{partition}:iam::{account_id}:root"
    logs = f"arn:{partition}:logs:{region}:{account_id}:log-group:*"
    statements = [
        {
            "Sid": "AccountRootAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:*",
            "Resource": "*",
        },
        *_cloudtrail_statements(account_id, partition, region),
        {
            "Sid": "CloudWatchLogsEncryptsLogGroups",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.{dns_suffix(partition)}"},
            "Action": list(_KMS_USE),
            "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": logs}},
        },
        _role_in_account(
            "AutoScalingUsesKey", list(_KMS_USE), account_id, autoscaling_service_role_arn(partition, account_id)
        ),
        _role_in_account(
            "AutoScalingAttachesVolumes",
            "kms:CreateGrant",
            account_id,
            autoscaling_service_role_arn(partition, account_id),
            Bool={"kms:GrantIsForAWSResource": "true"},
        ),
    ]
    if bucket_arn:
        statements.append(
            _role_in_account(
                "FsxLinkedBucketThroughS3",
                list(_KMS_USE),
                account_id,
                fsx_s3_service_role_pattern(partition, account_id),
                StringEquals={"kms:ViaService": f"s3.{region}.{dns_suffix(partition)}"},
                # bucket ARN: objects under an S3 bucket key; bucket ARN/*: objects without one
                StringLike={"kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/*"]},
            )
        )
    return _doc(*statements)


def _cloudtrail_statements(account_id: str, partition: str, region: str) -> list[Policy]:
    trails = f"arn:{partition}:cloudtrail:{region}:{account_id}:trail/*"
    any_region_trails = f"arn:{partition}:cloudtrail:*:{account_id}:trail/*"
    return [
        {
            "Sid": "CloudTrailEncryptsLogs",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:GenerateDataKey*",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "StringLike": {"aws:SourceArn": trails, "kms:EncryptionContext:aws:cloudtrail:arn": any_region_trails},
            },
        },
        {
            "Sid": "CloudTrailDescribesKey",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
    ]


def tls_only_statement(bucket_arn: str) -> Policy:
    """Deny every request to the bucket that does not arrive over TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def tls_only_bucket_policy(bucket_arn: str) -> Policy:
    return _doc(tls_only_statement(bucket_arn))


def cloudtrail_bucket_policy(bucket_arn: str, account_id: str, partition: str, trail_arn: str) -> Policy:
    """What CloudTrail needs to deliver one trail's logs (``aws:SourceArn`` pins the trail)."""
    del partition  # the bucket and trail ARNs already carry it; kept for a uniform signature
    return _doc(
        {
            "Sid": "CloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": bucket_arn,
            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}},
        },
        {
            "Sid": "CloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/AWSLogs/{account_id}/*",
            "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": trail_arn}},
        },
    )


def merge_policies(*docs: Policy) -> Policy:
    """One document with the statements of all ``docs`` (in order)."""
    return _doc(*(statement for doc in docs for statement in doc["Statement"]))


def flow_log_trust_policy(account_id: str, partition: str, region: str) -> Policy:
    """Trust for the VPC flow-log delivery role (confused-deputy guard: only this account's flow logs)."""
    return service_trust_policy(
        "vpc-flow-logs.amazonaws.com",
        {
            "StringEquals": {"aws:SourceAccount": account_id},
            "ArnLike": {"aws:SourceArn": f"arn:{partition}:ec2:{region}:{account_id}:vpc-flow-log/*"},
        },
    )


def flow_log_permissions_policy(log_group_arn: str) -> Policy:
    """Write flow-log streams into one log group (pre-created, so no logs:CreateLogGroup)."""
    # DescribeLogGroups is a list action; IAM evaluates it against log-group:* of the region.
    _, partition, _, region, account, _ = log_group_arn.split(":", 5)
    region_groups = f"arn:{partition}:logs:{region}:{account}:log-group:*"
    return _doc(
        {
            "Sid": "WriteFlowLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [log_group_arn, f"{log_group_arn}:*"],
        },
        {"Sid": "FindLogGroup", "Effect": "Allow", "Action": ["logs:DescribeLogGroups"], "Resource": [region_groups]},
    )


def arn_account(arn: str) -> str:
    """Account id field of an ARN (``arn:partition:service:region:account:resource``)."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"{arn!r} is not an ARN")
    return parts[4]


def arn_partition(arn: str) -> str:
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"{arn!r} is not an ARN")
    return parts[1]
