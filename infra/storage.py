"""Storage components: the checkpoint bucket (+ opt-in EBS default encryption) and FSx for Lustre.

Everything at rest is encrypted with the cluster CMK from :mod:`infra.security`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_policies as pol
from infra.config import Fsx

#: Days after which S3 aborts an unfinished multipart upload (a killed checkpoint writer's parts).
ABORT_MULTIPART_DAYS = 7
#: FSx auto import/export: keep the file system and the bucket in step both ways.
DRA_EVENTS = ["NEW", "CHANGED", "DELETED"]
LUSTRE_VERSION = "2.15"


@dataclass(frozen=True)
class HardenedBucket:
    """The configuration resources every aidc bucket gets (see :func:`harden_bucket`)."""

    encryption: aws.s3.BucketServerSideEncryptionConfiguration
    versioning: aws.s3.BucketVersioning
    public_access_block: aws.s3.BucketPublicAccessBlock


def harden_bucket(
    name: str, bucket: aws.s3.Bucket, kms_key_arn: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> HardenedBucket:
    """SSE-KMS with the CMK (bucket key on: far fewer KMS calls), versioning, public access blocked."""
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-sse",
        bucket=bucket.bucket,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(  # noqa: E501
                    sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn
                ),
                bucket_key_enabled=True,
            )
        ],
        opts=opts,
    )
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning",
        bucket=bucket.bucket,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        opts=opts,
    )
    public_access_block = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access-block",
        bucket=bucket.bucket,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    return HardenedBucket(encryption=encryption, versioning=versioning, public_access_block=public_access_block)


@dataclass(kw_only=True)
class StorageArgs:
    """Inputs of :class:`Storage`.

    ``noncurrent_version_days``: overwritten/deleted checkpoint versions are kept this long.
    ``force_destroy``: let ``pulumi destroy`` delete a non-empty bucket (dev stacks only).
    ``ebs_encryption_by_default``: turn on account+region-wide EBS default encryption with the CMK
    (affects every volume created in the region, not only this stack's).
    """

    cluster: str
    bucket_name: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    noncurrent_version_days: int = 30
    force_destroy: bool = False
    ebs_encryption_by_default: bool = False
    tags: dict[str, str]


class Storage(pulumi.ComponentResource):
    """The checkpoint bucket, TLS-only, versioned with a noncurrent-version lifecycle."""

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aidc:index:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.bucket = aws.s3.Bucket(
            f"{name}-checkpoints",
            bucket=args.bucket_name,
            force_destroy=args.force_destroy,
            tags=args.tags,
            opts=child,
        )
        hardened = harden_bucket(f"{name}-checkpoints", self.bucket, args.kms_key_arn, child)
        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-checkpoints-policy",
            bucket=self.bucket.bucket,
            policy=self.bucket.arn.apply(lambda arn: json.dumps(pol.tls_only_bucket_policy(arn))),
            # S3 rejects policies while the public access block is being changed.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[hardened.public_access_block]),
        )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-checkpoints-lifecycle",
            bucket=self.bucket.bucket,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    # Whole bucket. `prefix=""` is the form every provider version accepts without a
                    # warning (an empty filter warns in some; terraform-provider-aws #41710).
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(  # noqa: E501
                        noncurrent_days=args.noncurrent_version_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(  # noqa: E501
                        days_after_initiation=ABORT_MULTIPART_DAYS
                    ),
                )
            ],
            # AWS: lifecycle rules on versions need versioning configured first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[hardened.versioning]),
        )
        self.hardened = hardened
        if args.ebs_encryption_by_default:
            self.ebs_default = aws.ebs.EncryptionByDefault(f"{name}-ebs-default", enabled=True, opts=child)
            self.ebs_default_key = aws.ebs.DefaultKmsKey(
                f"{name}-ebs-default-key", key_arn=args.kms_key_arn, opts=child
            )

        self.bucket_name: pulumi.Output[str] = self.bucket.bucket
        self.bucket_arn: pulumi.Output[str] = self.bucket.arn
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn})


@dataclass(kw_only=True)
class LustreArgs:
    """Inputs of :class:`LustreFileSystem`.

    ``subnet_id``: a private subnet in the training pool's AZ (Lustre is single-AZ; cross-AZ
    traffic would cost latency and money). ``bucket_name``: linked when ``fsx.s3_link``.
    """

    cluster: str
    fsx: Fsx
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    tags: dict[str, str]


class LustreFileSystem(pulumi.ComponentResource):
    """FSx for Lustre 2.15, LZ4-compressed, CMK-encrypted, optionally linked to the bucket (DRA)."""

    def __init__(self, name: str, args: LustreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aidc:index:LustreFileSystem", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        fsx = args.fsx
        persistent = fsx.deployment_type.startswith("PERSISTENT")
        self.file_system = aws.fsx.LustreFileSystem(
            f"{name}-fs",
            deployment_type=fsx.deployment_type,
            storage_capacity=fsx.storage_capacity_gib,
            # Throughput per TiB and a customer key exist only for PERSISTENT deployments;
            # SCRATCH_2 is always encrypted with an FSx-managed key.
            per_unit_storage_throughput=fsx.per_unit_storage_throughput if persistent else None,
            kms_key_id=args.kms_key_arn if persistent else None,
            # pulumi-aws v7 types this as ONE subnet id (Lustre is single-AZ), not a list.
            subnet_ids=args.subnet_id,
            security_group_ids=[args.security_group_id],
            data_compression_type="LZ4",
            file_system_type_version=LUSTRE_VERSION,
            copy_tags_to_backups=True if persistent else None,  # scratch file systems have no backups
            tags=args.tags,
            opts=child,
        )
        self.data_repository_association = None
        if fsx.s3_link:
            self.data_repository_association = aws.fsx.DataRepositoryAssociation(
                f"{name}-dra",
                file_system_id=self.file_system.id,
                file_system_path=fsx.file_system_path,
                data_repository_path=pulumi.Output.concat("s3://", args.bucket_name, "/"),
                batch_import_meta_data_on_create=True,
                s3=aws.fsx.DataRepositoryAssociationS3Args(
                    auto_import_policy=aws.fsx.DataRepositoryAssociationS3AutoImportPolicyArgs(events=DRA_EVENTS),
                    auto_export_policy=aws.fsx.DataRepositoryAssociationS3AutoExportPolicyArgs(events=DRA_EVENTS),
                ),
                tags=args.tags,
                opts=child,
            )
        self.dns_name: pulumi.Output[str] = self.file_system.dns_name
        self.mount_name: pulumi.Output[str] = self.file_system.mount_name
        self.register_outputs({"dnsName": self.dns_name, "mountName": self.mount_name})
