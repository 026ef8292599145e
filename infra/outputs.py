"""Stack output names: one module read by the program, the tests and the workload launchers."""

from __future__ import annotations

CLUSTER_NAME = "clusterName"
REGION = "region"
VPC_ID = "vpcId"
VPC_CIDR = "vpcCidr"
PUBLIC_SUBNET_IDS = "publicSubnetIds"
PRIVATE_SUBNET_IDS = "privateSubnetIds"
NODE_SECURITY_GROUP_ID = "nodeSecurityGroupId"
NODE_ROLE_ARN = "nodeRoleArn"
INSTANCE_PROFILE_NAME = "instanceProfileName"
KMS_KEY_ARN = "kmsKeyArn"
CHECKPOINT_BUCKET = "checkpointBucket"
FSX_DNS_NAME = "fsxDnsName"
FSX_MOUNT_NAME = "fsxMountName"
TRAIL_NAME = "trailName"
FLOW_LOG_GROUP = "flowLogGroup"
#: ``{pool: {"role", "instanceType", "gpusPerNode", "efaPerNode", "instanceIds", "privateIps",
#: "names", "placementGroup", "launchTemplateId", "autoScalingGroup"}}``
NODE_POOLS = "nodePools"

ALL_OUTPUTS: tuple[str, ...] = (
    CLUSTER_NAME,
    REGION,
    VPC_ID,
    VPC_CIDR,
    PUBLIC_SUBNET_IDS,
    PRIVATE_SUBNET_IDS,
    NODE_SECURITY_GROUP_ID,
    NODE_ROLE_ARN,
    INSTANCE_PROFILE_NAME,
    KMS_KEY_ARN,
    CHECKPOINT_BUCKET,
    FSX_DNS_NAME,
    FSX_MOUNT_NAME,
    TRAIL_NAME,
    FLOW_LOG_GROUP,
    NODE_POOLS,
)
