"""Wires the components of one stack together from a validated :class:`~infra.config.StackConfig`.

Order matters only through inputs: Security (CMK, node role) -> Network (VPC, flow logs with the
CMK, node SG) -> Storage (bucket) -> Lustre (in the training AZ) -> Audit -> node pools.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra import outputs as out
from infra.compute import GpuNodePool, GpuNodePoolArgs
from infra.config import ConfigError, StackConfig
from infra.tags import base_tags


def bucket_name_for(cfg: StackConfig, account_id: str | None) -> str:
    """Checkpoint bucket name: configured, else ``aidc-<cluster>-<stack>-<account>-<region>`` (<= 63)."""
    if cfg.storage.bucket_name:
        return cfg.storage.bucket_name
    parts = ["aidc", cfg.cluster.name, cfg.stack, account_id, cfg.region]
    name = "-".join(p for p in parts if p).lower()
    return name[:63].rstrip("-.")


def check_offerings(cfg: StackConfig) -> None:
    """Fail before any resource exists when a pool's type is not offered in one of its AZs."""
    pools = cfg.cluster.node_pools
    if not pools:
        return
    wanted = {(p.instance_type, az) for p in pools for az in cfg.cluster.pool_azs(p)}
    result = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone",
        filters=[
            aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="instance-type", values=sorted({t for t, _ in wanted})),
            aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="location", values=sorted({az for _, az in wanted})),
        ],
    )
    if result.instance_types is None:
        # AWS always answers with a list (empty when nothing matches); no list at all means the
        # answer did not come from EC2 (a bare test mock), so there is nothing to check against.
        pulumi.log.warn("instance type offerings unavailable; skipping the AZ offering check")
        return
    offered = set(zip(result.instance_types, result.locations or [], strict=False))
    for i, pool in enumerate(pools):
        for az in cfg.cluster.pool_azs(pool):
            if (pool.instance_type, az) not in offered:
                where = sorted(loc for t, loc in offered if t == pool.instance_type)
                raise ConfigError(
                    f"aidc:cluster.nodePools[{i}].instanceType: {pool.instance_type!r} is not offered in {az!r}"
                    f"{'; offered in ' + ', '.join(where) if where else ' (nor in the other cluster AZs)'}; "
                    "choose another AZ or instance type"
                )


def resolve_ami(pool) -> pulumi.Input[str]:
    """The pool's AMI id: given directly, or read from its SSM parameter at deploy time."""
    if pool.ami.id:
        return pool.ami.id
    return aws.ssm.get_parameter_output(name=pool.ami.parameter).value


def resolve_root_device(ami_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """The AMI's own root device name (Ubuntu and the DLAMI: /dev/sda1; AL2023, Bottlerocket:
    /dev/xvda). The launch template's root volume must name it: another name adds a second volume
    and leaves the real root at the AMI's size and encryption."""
    return aws.ec2.get_ami_output(filters=[aws.ec2.GetAmiFilterArgs(name="image-id", values=[ami_id])]).root_device_name


def build(cfg: StackConfig) -> dict[str, object]:
    """Declare every resource of the stack; returns the stack outputs (names from ``infra.outputs``)."""
    # Imported here so that importing this module (e.g. for bucket_name_for) stays cheap.
    from infra.audit import Audit, AuditArgs
    from infra.network import Network, NetworkArgs
    from infra.security import Security, SecurityArgs
    from infra.storage import LustreArgs, LustreFileSystem, Storage, StorageArgs

    check_offerings(cfg)
    identity = aws.get_caller_identity()
    partition = aws.get_partition().partition or "aws"
    cluster = cfg.cluster
    tags = base_tags(cfg.stack, cluster.name, cfg.tags)
    bucket_name = bucket_name_for(cfg, identity.account_id)
    name = cluster.name

    security = Security(
        f"{name}-security",
        SecurityArgs(
            cluster=name,
            account_id=identity.account_id,
            partition=partition,
            region=cfg.region,
            bucket_name=bucket_name,
            tags=tags,
        ),
    )
    network = Network(
        f"{name}-network",
        NetworkArgs(
            cluster=name,
            region=cfg.region,
            vpc_cidr=cluster.vpc_cidr,
            availability_zones=list(cluster.availability_zones),
            nat_mode=cluster.nat_mode,
            ssm_endpoints=cluster.ssm_endpoints,
            flow_log_retention_days=cluster.flow_log_retention_days,
            kms_key_arn=security.key_arn,
            ssh_cidrs=list(cfg.access.ssh_cidrs),
            fsx_enabled=cfg.storage.fsx.enabled,
            tags=tags,
        ),
    )
    storage = Storage(
        f"{name}-storage",
        StorageArgs(
            cluster=name,
            bucket_name=bucket_name,
            kms_key_arn=security.key_arn,
            noncurrent_version_days=cfg.storage.noncurrent_version_days,
            force_destroy=cfg.storage.force_destroy,
            ebs_encryption_by_default=cfg.storage.ebs_encryption_by_default,
            tags=tags,
        ),
    )
    lustre = None
    if cfg.storage.fsx.enabled:
        lustre = LustreFileSystem(
            f"{name}-fsx",
            LustreArgs(
                cluster=name,
                fsx=cfg.storage.fsx,
                subnet_id=network.private_subnet_ids[cfg.fsx_az],
                security_group_id=network.node_security_group_id,
                kms_key_arn=security.key_arn,
                bucket_name=storage.bucket_name,
                tags=tags,
            ),
        )
    audit = Audit(
        f"{name}-audit",
        AuditArgs(
            cluster=name,
            stack=cfg.stack,
            account_id=identity.account_id,
            partition=partition,
            region=cfg.region,
            kms_key_arn=security.key_arn,
            force_destroy=cfg.storage.force_destroy,
            tags=tags,
        ),
    )
    pools = {}
    for pool in cluster.node_pools:
        ami_id = resolve_ami(pool)
        pools[pool.name] = GpuNodePool(
            f"{name}-{pool.name}",
            GpuNodePoolArgs(
                cluster=name,
                pool=pool,
                azs=cluster.pool_azs(pool),
                subnet_ids=network.private_subnet_ids,
                security_group_id=network.node_security_group_id,
                instance_profile_arn=security.instance_profile_arn,
                kms_key_arn=security.key_arn,
                ami_id=ami_id,
                root_device_name=resolve_root_device(ami_id),
                tags=tags,
            ),
        )

    return {
        out.CLUSTER_NAME: name,
        out.REGION: cfg.region,
        out.VPC_ID: network.vpc_id,
        out.VPC_CIDR: cluster.vpc_cidr,
        out.PUBLIC_SUBNET_IDS: network.public_subnet_ids,
        out.PRIVATE_SUBNET_IDS: network.private_subnet_ids,
        out.NODE_SECURITY_GROUP_ID: network.node_security_group_id,
        out.NODE_ROLE_ARN: security.node_role_arn,
        out.INSTANCE_PROFILE_NAME: security.instance_profile_name,
        out.KMS_KEY_ARN: security.key_arn,
        out.CHECKPOINT_BUCKET: storage.bucket_name,
        out.FSX_DNS_NAME: lustre.dns_name if lustre else None,
        out.FSX_MOUNT_NAME: lustre.mount_name if lustre else None,
        out.TRAIL_NAME: audit.trail_name,
        out.FLOW_LOG_GROUP: network.flow_log_group_name,
        out.NODE_POOLS: {
            pool_name: {
                "role": p.pool.role,
                "instanceType": p.pool.instance_type,
                "gpusPerNode": p.spec.gpus,
                "efaPerNode": sum(1 for s in p.nics if s.efa_capable),
                "names": p.names,
                "instanceIds": p.instance_ids,
                "privateIps": p.private_ips,
                "placementGroup": p.placement_group_name,
                "launchTemplateId": p.launch_template.id,
                "autoScalingGroup": p.auto_scaling_group.name if p.auto_scaling_group else None,
            }
            for pool_name, p in pools.items()
        },
    }
