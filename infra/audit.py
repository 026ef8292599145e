"""Audit component: a multi-region CloudTrail trail into its own locked-down, CMK-encrypted bucket."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_policies as pol
from infra.storage import harden_bucket


def trail_name_for(cluster: str, stack: str) -> str:
    """Trail name; fixed (not auto-named) so the bucket policy can name the trail's ARN before it exists."""
    return f"aidc-{cluster}-{stack}"


def trail_bucket_name(cluster: str, stack: str, account_id: str, region: str) -> str:
    """Globally unique, readable S3 name: account and region first so truncation to 63 keeps them."""
    raw = f"aidc-trail-{account_id}-{region}-{cluster}-{stack}".lower()
    return re.sub(r"[^a-z0-9-]+", "-", raw)[:63].rstrip("-")


@dataclass(kw_only=True)
class AuditArgs:
    """Inputs of :class:`Audit`. ``force_destroy`` lets ``pulumi destroy`` empty the trail bucket."""

    cluster: str
    stack: str
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    region: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    force_destroy: bool = False
    tags: dict[str, str]


class Audit(pulumi.ComponentResource):
    """CloudTrail: all regions, global service events, log file validation, SSE-KMS with the CMK."""

    def __init__(self, name: str, args: AuditArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aidc:index:Audit", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        trail_name = trail_name_for(args.cluster, args.stack)

        bucket_name = pulumi.Output.all(args.account_id, args.region).apply(
            lambda v: trail_bucket_name(args.cluster, args.stack, v[0], v[1])
        )
        self.bucket = aws.s3.Bucket(
            f"{name}-trail", bucket=bucket_name, force_destroy=args.force_destroy, tags=args.tags, opts=child
        )
        hardened = harden_bucket(f"{name}-trail", self.bucket, args.kms_key_arn, child)
        policy = pulumi.Output.all(self.bucket.arn, args.account_id, args.partition, args.region).apply(
            lambda v: json.dumps(
                pol.merge_policies(
                    pol.cloudtrail_bucket_policy(v[0], v[1], v[2], pol.trail_arn(v[2], v[3], v[1], trail_name)),
                    pol.tls_only_bucket_policy(v[0]),
                )
            )
        )
        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-trail-policy",
            bucket=self.bucket.bucket,
            policy=policy,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[hardened.public_access_block]),
        )
        self.trail = aws.cloudtrail.Trail(
            f"{name}-trail",
            name=trail_name,
            s3_bucket_name=self.bucket.bucket,
            is_multi_region_trail=True,
            include_global_service_events=True,
            enable_log_file_validation=True,
            kms_key_id=args.kms_key_arn,
            tags=args.tags,
            # CloudTrail checks the bucket policy (and encryption) when the trail is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bucket_policy, hardened.encryption]),
        )
        self.trail_name: pulumi.Output[str] = self.trail.name
        self.trail_arn: pulumi.Output[str] = self.trail.arn
        self.register_outputs({"trailName": self.trail_name, "trailArn": self.trail_arn, "bucket": self.bucket.bucket})
