"""Network component: VPC, subnets, NAT, routes, endpoints, flow logs and the node security group.

Nodes live in private subnets only (several NICs per GPU node rule out auto-assigned public IPs;
operators reach them through SSM). The node security group is declared here, not in
:mod:`infra.security`: it needs the VPC, and the VPC's flow-log group needs the CMK from Security,
so an SG in Security would make the two components depend on each other.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_aws as aws

from infra import iam_policies as pol
from infra.network_plan import plan_subnets
from infra.tags import TAG_NAME

#: Interface endpoints Session Manager needs so private nodes reach SSM without the internet.
SSM_ENDPOINT_SERVICES = ("ssm", "ssmmessages", "ec2messages")
#: Lustre client <-> server ports (FSx for Lustre security group requirements).
LUSTRE_PORTS = ((988, 988), (1018, 1023))


def service_name(region: str, service: str) -> str:
    """VPC endpoint service name (China regions use the ``cn.com.amazonaws`` prefix)."""
    prefix = "cn.com.amazonaws" if region.startswith("cn-") else "com.amazonaws"
    return f"{prefix}.{region}.{service}"


@dataclass(kw_only=True)
class NetworkArgs:
    """Inputs of :class:`Network`.

    ``nat_mode``: ``single`` (one NAT gateway in the first AZ, cheapest) or ``per-az`` (one per
    AZ, no cross-AZ dependency). ``ssh_cidrs``: SSH (TCP 22) sources; empty means no SSH at all.
    ``fsx_enabled`` adds the Lustre ports to the node security group.
    """

    cluster: str
    region: str
    vpc_cidr: str
    availability_zones: list[str]
    nat_mode: Literal["single", "per-az"] = "single"
    ssm_endpoints: bool = True
    flow_log_retention_days: int = 90
    kms_key_arn: pulumi.Input[str]
    ssh_cidrs: list[str] = field(default_factory=list)
    fsx_enabled: bool = False
    tags: dict[str, str]


class Network(pulumi.ComponentResource):
    """See the module docstring; attributes are the ids later layers need."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aidc:index:Network", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=self._tags(f"{args.cluster}-vpc"),
            opts=self._child,
        )
        self.vpc_id: pulumi.Output[str] = self.vpc.id
        self._subnets()
        self._gateways_and_routes()
        self._endpoints()
        self._flow_logs()
        self._node_security_group()

        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "nodeSecurityGroupId": self.node_security_group_id,
                "flowLogGroupName": self.flow_log_group_name,
            }
        )

    def _tags(self, name_tag: str) -> dict[str, str]:
        return {**self._args.tags, TAG_NAME: name_tag}

    def _subnets(self) -> None:
        args, name = self._args, self._name
        self.public_subnets: dict[str, aws.ec2.Subnet] = {}
        self.private_subnets: dict[str, aws.ec2.Subnet] = {}
        for plan in plan_subnets(args.vpc_cidr, args.availability_zones):
            self.public_subnets[plan.az] = aws.ec2.Subnet(
                f"{name}-public-{plan.az}",
                vpc_id=self.vpc.id,
                availability_zone=plan.az,
                cidr_block=plan.public_cidr,
                # Only NAT gateways live here, and they bring their own EIPs.
                map_public_ip_on_launch=False,
                tags=self._tags(f"{args.cluster}-public-{plan.az}"),
                opts=self._child,
            )
            self.private_subnets[plan.az] = aws.ec2.Subnet(
                f"{name}-private-{plan.az}",
                vpc_id=self.vpc.id,
                availability_zone=plan.az,
                cidr_block=plan.private_cidr,
                map_public_ip_on_launch=False,
                tags=self._tags(f"{args.cluster}-private-{plan.az}"),
                opts=self._child,
            )
        self.public_subnet_ids = {az: s.id for az, s in self.public_subnets.items()}
        self.private_subnet_ids = {az: s.id for az, s in self.private_subnets.items()}

    def _gateways_and_routes(self) -> None:
        args, name, child = self._args, self._name, self._child
        self.internet_gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=self._tags(f"{args.cluster}-igw"), opts=child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=self.vpc.id, tags=self._tags(f"{args.cluster}-public"), opts=child
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=self.internet_gateway.id,
            opts=child,
        )
        for az, subnet in self.public_subnets.items():
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{az}", route_table_id=public_rt.id, subnet_id=subnet.id, opts=child
            )
        self.public_route_table = public_rt

        nat_azs = args.availability_zones if args.nat_mode == "per-az" else args.availability_zones[:1]
        self.nat_gateways: dict[str, aws.ec2.NatGateway] = {}
        for az in nat_azs:
            eip = aws.ec2.Eip(
                f"{name}-nat-eip-{az}", domain="vpc", tags=self._tags(f"{args.cluster}-nat-{az}"), opts=child
            )
            self.nat_gateways[az] = aws.ec2.NatGateway(
                f"{name}-nat-{az}",
                allocation_id=eip.id,
                subnet_id=self.public_subnets[az].id,
                connectivity_type="public",
                tags=self._tags(f"{args.cluster}-nat-{az}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.internet_gateway]),
            )

        self.private_route_tables: dict[str, aws.ec2.RouteTable] = {}
        for az, subnet in self.private_subnets.items():
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{az}",
                vpc_id=self.vpc.id,
                tags=self._tags(f"{args.cluster}-private-{az}"),
                opts=child,
            )
            nat = self.nat_gateways.get(az) or self.nat_gateways[nat_azs[0]]
            aws.ec2.Route(
                f"{name}-private-default-{az}",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat.id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"{name}-private-{az}", route_table_id=rt.id, subnet_id=subnet.id, opts=child)
            self.private_route_tables[az] = rt
        self.private_route_table_ids = [rt.id for rt in self.private_route_tables.values()]

    def _endpoints(self) -> None:
        args, name, child = self._args, self._name, self._child
        # Checkpoint traffic to S3 stays on the AWS network and skips the NAT (no per-GB charge).
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=self.vpc.id,
            service_name=service_name(args.region, "s3"),
            vpc_endpoint_type="Gateway",
            route_table_ids=self.private_route_table_ids,
            tags=self._tags(f"{args.cluster}-s3"),
            opts=child,
        )
        self.interface_endpoints: dict[str, aws.ec2.VpcEndpoint] = {}
        if not args.ssm_endpoints:
            return
        self.endpoint_security_group = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg",
            vpc_id=self.vpc.id,
            description=f"aidc {args.cluster}: HTTPS from the VPC to the SSM interface endpoints",
            tags=self._tags(f"{args.cluster}-endpoints"),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https",
            security_group_id=self.endpoint_security_group.id,
            description="HTTPS from inside the VPC",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4=args.vpc_cidr,
            tags=args.tags,
            opts=child,
        )
        for service in SSM_ENDPOINT_SERVICES:
            self.interface_endpoints[service] = aws.ec2.VpcEndpoint(
                f"{name}-{service}",
                vpc_id=self.vpc.id,
                service_name=service_name(args.region, service),
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=list(self.private_subnet_ids.values()),
                security_group_ids=[self.endpoint_security_group.id],
                tags=self._tags(f"{args.cluster}-{service}"),
                opts=child,
            )

    def _flow_logs(self) -> None:
        args, name, child = self._args, self._name, self._child
        self.flow_log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/aidc/{args.cluster}/vpc-flow-logs",
            retention_in_days=args.flow_log_retention_days,
            kms_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        # Account and partition come from the group's own ARN (same account by construction).
        trust = self.flow_log_group.arn.apply(
            lambda arn: json.dumps(pol.flow_log_trust_policy(pol.arn_account(arn), pol.arn_partition(arn), args.region))
        )
        self.flow_log_role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=trust, tags=args.tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=self.flow_log_role.name,
            policy=self.flow_log_group.arn.apply(lambda arn: json.dumps(pol.flow_log_permissions_policy(arn))),
            opts=child,
        )
        self.flow_log = aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=self.flow_log_group.arn,
            iam_role_arn=self.flow_log_role.arn,
            max_aggregation_interval=60,
            tags=args.tags,
            opts=child,
        )
        self.flow_log_group_name: pulumi.Output[str] = self.flow_log_group.name

    def _sg_rule(self, direction: str, suffix: str, sg: aws.ec2.SecurityGroup, description: str, **rule) -> None:
        """One rule as its own resource (AWS's current model: one rule, one id, its own tags)."""
        cls = aws.vpc.SecurityGroupIngressRule if direction == "in" else aws.vpc.SecurityGroupEgressRule
        cls(
            f"{self._name}-nodes-{direction}-{suffix}",
            security_group_id=sg.id,
            description=description,
            tags=self._args.tags,
            opts=self._child,
            **rule,
        )

    def _node_security_group(self) -> None:
        args = self._args
        sg = aws.ec2.SecurityGroup(
            f"{self._name}-nodes-sg",
            vpc_id=self.vpc.id,
            description=f"aidc {args.cluster} GPU nodes: EFA/NCCL between nodes, egress via NAT",
            tags=self._tags(f"{args.cluster}-nodes"),
            opts=self._child,
        )
        self.node_security_group = sg
        self.node_security_group_id: pulumi.Output[str] = sg.id

        # EFA requires all traffic to and from the group itself, in BOTH directions.
        for direction in ("in", "out"):
            self._sg_rule(
                direction,
                "self",
                sg,
                "All traffic between cluster nodes (EFA, NCCL)",
                ip_protocol="-1",
                referenced_security_group_id=sg.id,
            )
        # Package and model downloads, SSM, S3 (through the NAT or the endpoints).
        self._sg_rule("out", "any", sg, "Outbound to anywhere (through NAT)", ip_protocol="-1", cidr_ipv4="0.0.0.0/0")
        for i, cidr in enumerate(args.ssh_cidrs):
            family = "cidr_ipv6" if ipaddress.ip_network(cidr).version == 6 else "cidr_ipv4"
            self._sg_rule(
                "in", f"ssh-{i}", sg, f"SSH from {cidr}", ip_protocol="tcp", from_port=22, to_port=22, **{family: cidr}
            )
        if args.fsx_enabled:
            # Covered by the all-traffic rule today; explicit so narrowing that rule keeps Lustre working.
            for low, high in LUSTRE_PORTS:
                self._sg_rule(
                    "in",
                    f"lustre-{low}",
                    sg,
                    f"Lustre TCP {low}-{high} between nodes and FSx",
                    ip_protocol="tcp",
                    from_port=low,
                    to_port=high,
                    referenced_security_group_id=sg.id,
                )
