"""Security component: the cluster's customer-managed KMS key and the node IAM role.

The node security group lives in :mod:`infra.network` (it needs the VPC, and the flow-log group
in the network needs this key: keeping the SG here would make Security and Network depend on
each other).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_policies as pol


@dataclass(kw_only=True)
class SecurityArgs:
    """Inputs of :class:`Security`.

    ``bucket_name`` is the checkpoint bucket the node role may use (the bucket itself is created
    by :class:`infra.storage.Storage`; its ARN is known from the name, which avoids a cycle).
    """

    cluster: str
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    region: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    tags: dict[str, str]


class Security(pulumi.ComponentResource):
    """CMK with rotation (alias ``alias/aidc-<cluster>``), node role, instance profile."""

    def __init__(self, name: str, args: SecurityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aidc:index:Security", name, None, opts)
        self._cluster_key(name, args)
        self._node_role(name, args)
        self.register_outputs(
            {
                "keyArn": self.key_arn,
                "keyAlias": self.key_alias,
                "nodeRoleArn": self.node_role_arn,
                "instanceProfileName": self.instance_profile_name,
            }
        )

    def _cluster_key(self, name: str, args: SecurityArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        key_policy = pulumi.Output.all(args.account_id, args.partition, args.region, args.bucket_name).apply(
            lambda v: json.dumps(
                pol.kms_key_policy(account_id=v[0], partition=v[1], region=v[2], bucket_arn=pol.bucket_arn(v[1], v[3]))
            )
        )
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"aidc {args.cluster}: checkpoints, volumes, FSx, flow logs, CloudTrail",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=key_policy,
            tags=args.tags,
            opts=child,
        )
        self.alias = aws.kms.Alias(
            f"{name}-key-alias", name=f"alias/aidc-{args.cluster}", target_key_id=self.key.key_id, opts=child
        )
        self.key_arn: pulumi.Output[str] = self.key.arn
        self.key_id: pulumi.Output[str] = self.key.key_id
        self.key_alias: pulumi.Output[str] = self.alias.name

    def _node_role(self, name: str, args: SecurityArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        self.node_role = aws.iam.Role(
            f"{name}-node-role",
            description=f"aidc {args.cluster} GPU nodes: SSM, checkpoint bucket, cluster key",
            assume_role_policy=json.dumps(pol.ec2_trust_policy()),
            tags=args.tags,
            opts=child,
        )
        self.ssm_attachment = aws.iam.RolePolicyAttachment(
            f"{name}-node-ssm",
            role=self.node_role.name,
            policy_arn=pulumi.Output.from_input(args.partition).apply(
                lambda p: pol.managed_policy_arn(p, pol.SSM_CORE_POLICY)
            ),
            opts=child,
        )
        inline = pulumi.Output.all(args.partition, args.bucket_name, self.key.arn).apply(
            lambda v: json.dumps(pol.node_inline_policy(pol.bucket_arn(v[0], v[1]), v[2]))
        )
        self.node_policy = aws.iam.RolePolicy(
            f"{name}-node-policy", role=self.node_role.name, policy=inline, opts=child
        )
        self.instance_profile = aws.iam.InstanceProfile(
            f"{name}-node-profile", role=self.node_role.name, tags=args.tags, opts=child
        )
        self.node_role_arn: pulumi.Output[str] = self.node_role.arn
        self.instance_profile_name: pulumi.Output[str] = self.instance_profile.name
        self.instance_profile_arn: pulumi.Output[str] = self.instance_profile.arn
