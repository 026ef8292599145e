"""GPU node pools: placement group (a new one, an ODCR's existing one, or none for a Capacity
Block), launch template (EFA NIC layout, IMDSv2, CMK-encrypted gp3 root, capacity), and either
fixed instances (training) or an Auto Scaling group (inference). Fixed instances never follow
template changes (a new AMI) by themselves; see :func:`fixed_node_options`.

All layout decisions come from pure code (``infra.catalog.network_interface_layout``,
``infra.config.NodePool``); this module only turns them into resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra import catalog
from infra.config import NodePool
from infra.tags import TAG_NAME, pool_tags

#: Resource types whose launch-time tags come from the template (instance, its volumes, its NICs).
TAGGED_AT_LAUNCH = ("instance", "volume", "network-interface")


def fixed_node_options(child: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """Options of a fixed pool's instance: its launch template is ignored after creation.

    The template moves to a new version whenever the AMI changes, and the default AMI is read from
    the DLAMI's ``.../latest/ami-id`` parameter on every ``pulumi up``; the provider replaces an
    instance whose ``$Latest`` version moved, so one AMI release would replace a whole pool
    (Capacity Block nodes included) on the next ``pulumi up --refresh``. Replacing a node is done
    on purpose only: ``pulumi up --replace <urn>`` (the new node gets the template's newest version).
    """
    return pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(ignore_changes=["launchTemplate"]))


@dataclass(kw_only=True)
class GpuNodePoolArgs:
    """Inputs of one pool. ``subnet_ids`` maps AZ -> private subnet id; ``azs`` are the pool's AZs
    (one for EFA pools, see ``infra.config.Cluster.pool_azs``)."""

    cluster: str
    pool: NodePool
    azs: list[str]
    subnet_ids: dict[str, pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    instance_profile_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    ami_id: pulumi.Input[str]
    #: The AMI's root device (``infra.program.resolve_root_device``): the template's root volume.
    root_device_name: pulumi.Input[str]
    tags: dict[str, str] = field(default_factory=dict)


class GpuNodePool(pulumi.ComponentResource):
    """One homogeneous GPU pool (type token ``aidc:index:GpuNodePool``)."""

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aidc:index:GpuNodePool", name, None, opts)
        pool = args.pool
        self.pool = pool
        self.spec = catalog.instance_type(pool.instance_type)
        self.nics = catalog.network_interface_layout(pool.instance_type, efa=pool.uses_efa)
        self.tags = pool_tags(args.tags, pool.name, pool.role)
        child = pulumi.ResourceOptions(parent=self)

        #: The group the stack creates (None when the pool uses none or an existing one).
        self.placement_group = None
        #: The name of the group the pool launches into, created here or existing (an ODCR's).
        self.placement_group_name: pulumi.Input[str] | None = pool.existing_placement_group
        if pool.uses_placement_group and self.placement_group_name is None:
            # One cluster placement group per pool: EFA needs the nodes on one network spine. Not
            # for an ODCR created in a group: it only serves launches into that very group.
            self.placement_group = aws.ec2.PlacementGroup(
                f"{name}-pg", strategy="cluster", tags={**self.tags, TAG_NAME: f"{name}-pg"}, opts=child
            )
            self.placement_group_name = self.placement_group.name

        self.launch_template = self._launch_template(name, args, child)
        self.instances: list[aws.ec2.Instance] = []
        self.auto_scaling_group = None
        if pool.autoscaling is not None:
            self.auto_scaling_group = self._auto_scaling_group(name, args, child)
        else:
            self.instances = [self._instance(name, i, args, child) for i in range(pool.count)]

        self.instance_ids = pulumi.Output.all(*[i.id for i in self.instances])
        self.private_ips = pulumi.Output.all(*[i.private_ip for i in self.instances])
        self.names = [f"{name}-{i}" for i in range(len(self.instances))]
        self.register_outputs(
            {
                "launchTemplateId": self.launch_template.id,
                "instanceIds": self.instance_ids,
                "privateIps": self.private_ips,
            }
        )

    # -- launch template -------------------------------------------------------------------------

    def _network_interfaces(self, args: GpuNodePoolArgs) -> list[aws.ec2.LaunchTemplateNetworkInterfaceArgs]:
        # A fixed single-AZ pool pins its subnet in the template; an ASG supplies subnets itself.
        subnet = args.subnet_ids[args.azs[0]] if self.pool.autoscaling is None else None
        interfaces = []
        for slot in self.nics:
            interfaces.append(
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    network_card_index=slot.network_card_index,
                    device_index=slot.device_index,
                    # The primary ENA is a plain interface; EFA devices are efa-only (no IP stack).
                    interface_type=slot.kind,
                    subnet_id=subnet,
                    security_groups=[args.security_group_id],
                    delete_on_termination="true",
                    associate_public_ip_address="false" if slot.primary else None,
                )
            )
        return interfaces

    def _capacity(self) -> dict:
        cap = self.pool.capacity
        kwargs: dict = {}
        if cap.type == "capacity-block":
            kwargs["instance_market_options"] = aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(
                market_type="capacity-block"
            )
        elif cap.type == "spot":
            kwargs["instance_market_options"] = aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(market_type="spot")
        if cap.type in ("capacity-block", "odcr"):
            kwargs["capacity_reservation_specification"] = aws.ec2.LaunchTemplateCapacityReservationSpecificationArgs(
                capacity_reservation_target=(
                    aws.ec2.LaunchTemplateCapacityReservationSpecificationCapacityReservationTargetArgs(
                        capacity_reservation_id=cap.reservation_id
                    )
                )
            )
        return kwargs

    def _launch_template(self, name: str, args: GpuNodePoolArgs, child) -> aws.ec2.LaunchTemplate:
        pool, vol = self.pool, self.pool.root_volume
        placement = None
        if self.placement_group_name is not None:
            placement = aws.ec2.LaunchTemplatePlacementArgs(
                group_name=self.placement_group_name,
                availability_zone=args.azs[0] if pool.autoscaling is None else None,
            )
        return aws.ec2.LaunchTemplate(
            f"{name}-lt",
            name=name,
            description=f"aidc {pool.role} pool {pool.name}: {pool.instance_type}, {len(self.nics)} NICs",
            image_id=args.ami_id,
            instance_type=pool.instance_type,
            ebs_optimized="true",
            update_default_version=True,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=args.instance_profile_arn),
            metadata_options=self._metadata_options(aws.ec2.LaunchTemplateMetadataOptionsArgs),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=args.root_device_name,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_type="gp3",
                        volume_size=vol.size_gib,
                        iops=vol.iops,
                        throughput=vol.throughput_mibps,
                        encrypted="true",
                        kms_key_id=args.kms_key_arn,
                        delete_on_termination="true",
                    ),
                )
            ],
            network_interfaces=self._network_interfaces(args),
            placement=placement,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=self.tags)
                for kind in TAGGED_AT_LAUNCH
            ],
            tags={**self.tags, TAG_NAME: name},
            **self._capacity(),
            opts=child,
        )

    def _metadata_options(self, args_cls):
        # IMDSv2 only; hop limit 1 unless containers on the node must reach IMDS (then 2).
        return args_cls(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=self.pool.imds_hop_limit,
            instance_metadata_tags="enabled",
        )

    # -- capacity: fixed instances or an ASG -----------------------------------------------------

    def _instance(self, name: str, index: int, args: GpuNodePoolArgs, child) -> aws.ec2.Instance:
        node = f"{name}-{index}"
        vol = self.pool.root_volume
        # The template carries everything; IMDS and root settings are repeated on the instance so a
        # per-resource policy (and a reader) can judge the instance without resolving the template.
        return aws.ec2.Instance(
            node,
            launch_template=aws.ec2.InstanceLaunchTemplateArgs(id=self.launch_template.id, version="$Latest"),
            metadata_options=self._metadata_options(aws.ec2.InstanceMetadataOptionsArgs),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3",
                volume_size=vol.size_gib,
                iops=vol.iops,
                throughput=vol.throughput_mibps,
                encrypted=True,
                kms_key_id=args.kms_key_arn,
                delete_on_termination=True,
            ),
            tags={**self.tags, TAG_NAME: node},
            volume_tags={**self.tags, TAG_NAME: f"{node}-root"},
            opts=fixed_node_options(child),
        )

    def _auto_scaling_group(self, name: str, args: GpuNodePoolArgs, child) -> aws.autoscaling.Group:
        scaling = self.pool.autoscaling
        assert scaling is not None  # guarded by the caller
        return aws.autoscaling.Group(
            f"{name}-asg",
            name=name,
            min_size=scaling.min_size,
            max_size=scaling.max_size,
            desired_capacity=self.pool.count,
            vpc_zone_identifiers=[args.subnet_ids[az] for az in args.azs],
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(id=self.launch_template.id, version="$Latest"),
            health_check_type="EC2",
            tags=[
                aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
                for k, v in {**self.tags, TAG_NAME: name}.items()
            ],
            opts=child,
        )
