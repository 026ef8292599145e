"""Network rules: no world-open ingress, empty default SG, flow logs on every VPC (EC2.2/6/18/19)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._model import (
    MANDATORY,
    Rule,
    StackIndex,
    StackResource,
    StackViolation,
    as_list,
    get,
    is_world_scale,
    safe,
    truthy,
)

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
SUBNET = "aws:ec2/subnet:Subnet"

_ALL_PROTOCOLS = {"-1", "all"}


def _open_ports_allowed(protocol: Any, from_port: Any, to_port: Any, allowed: Sequence[int]) -> bool:
    """True when a world-open rule only opens ports from the allowlist (single TCP/UDP ports)."""
    if str(protocol).lower() in _ALL_PROTOCOLS or from_port is None:
        return False
    if to_port is None:
        to_port = from_port
    try:
        ports = range(int(from_port), int(to_port) + 1)
    except (TypeError, ValueError):
        return False
    return len(ports) > 0 and len(ports) <= 16 and all(p in allowed for p in ports)


def _world(cidrs: Any) -> list[str]:
    return [c for c in as_list(cidrs) if is_world_scale(c)]


def world_ingress_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EC2.18/EC2.19: no ingress from the world (0.0.0.0/0, ::/0, ::/1, ...) except on allowed ports.

    Covers inline ``ingress`` blocks and both separate-rule resources (``ec2.SecurityGroupRule``
    with ``type = "ingress"`` and ``vpc.SecurityGroupIngressRule``).
    """
    allowed = [int(p) for p in (config or {}).get("allowedPublicPorts", [])]
    if resource_type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        rules = [
            (get(r, "protocol"), get(r, "fromPort"), get(r, "toPort"),
             _world(get(r, "cidrBlocks")) + _world(get(r, "ipv6CidrBlocks")))
            for r in as_list(get(props, "ingress"))
        ]
    elif resource_type == SG_RULE:
        if get(props, "type") != "ingress":
            return []
        rules = [(get(props, "protocol"), get(props, "fromPort"), get(props, "toPort"),
                  _world(get(props, "cidrBlocks")) + _world(get(props, "ipv6CidrBlocks")))]
    else:
        rules = [(get(props, "ipProtocol"), get(props, "fromPort"), get(props, "toPort"),
                  _world(get(props, "cidrIpv4")) + _world(get(props, "cidrIpv6")))]
    return [
        f"Ingress {protocol} ports {from_port}-{to_port} is open to {', '.join(cidrs)}: reach nodes "
        "through SSM or a peer security group, or list the port in allowedPublicPorts."
        for protocol, from_port, to_port, cidrs in rules
        if cidrs and not _open_ports_allowed(protocol, from_port, to_port, allowed)
    ]


def default_sg_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EC2.2: a managed default security group carries no rules at all."""
    count = len(as_list(get(props, "ingress"))) + len(as_list(get(props, "egress")))
    if count:
        return [f"DefaultSecurityGroup has {count} rule(s); the default group must stay empty."]
    return []


def subnet_public_ip_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """EC2.15: subnets do not hand out public IPv4 addresses automatically (NAT gateways need none)."""
    if truthy(get(props, "mapPublicIpOnLaunch")):
        return ["Subnet mapPublicIpOnLaunch is true: every instance launched there becomes reachable; set it "
                "false (NAT gateways and load balancers do not need it)."]
    return []


def flow_log_violations(resources: Sequence[StackResource], config: Mapping | None = None) -> list[StackViolation]:
    """EC2.6: every VPC of the stack has a flow log (vpcId) capturing ALL or REJECT traffic."""
    index = StackIndex(resources)
    covered: set[str] = set()
    for log in index.of_type(FLOW_LOG):
        if get(log.props, "trafficType", default="ALL") not in ("ALL", "REJECT"):
            continue
        vpc_ref = safe(lambda log=log: get(log.props, "vpcId"))
        covered.update(v.urn for v in index.resolve(log, "vpcId", vpc_ref, (VPC,)))
    return [
        StackViolation(vpc.urn, vpc.name, f"VPC {vpc.name} has no flow log: add aws.ec2.FlowLog(vpc_id=..., "
                       "traffic_type=\"ALL\") to CloudWatch Logs or S3.")
        for vpc in index.of_type(VPC)
        if vpc.urn not in covered
    ]


RULES = [
    Rule(
        name="sg-no-world-ingress",
        control="FSBP EC2.18, EC2.19",
        level=MANDATORY,
        description="Security groups allow no ingress from 0.0.0.0/0, ::/0 or ranges broader than /8 (v4), /32 (v6).",
        remediation="Use SSM Session Manager or a source security group; allowlist ports via allowedPublicPorts.",
        validator=world_ingress_violations,
        resource_types=(SECURITY_GROUP, DEFAULT_SECURITY_GROUP, SG_RULE, SG_INGRESS_RULE),
        config={
            "allowedPublicPorts": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 65535},
                "default": [],
                "description": "TCP/UDP ports that may be open to the world (e.g. [443] for a public endpoint).",
            }
        },
    ),
    Rule(
        name="default-sg-no-rules",
        control="FSBP EC2.2",
        level=MANDATORY,
        description="A managed VPC default security group has no ingress or egress rules.",
        remediation="aws.ec2.DefaultSecurityGroup(vpc_id=..., ingress=[], egress=[])",
        validator=default_sg_violations,
        resource_types=(DEFAULT_SECURITY_GROUP,),
    ),
    Rule(
        name="subnet-no-auto-public-ip",
        control="FSBP EC2.15",
        level=MANDATORY,
        description="Subnets do not auto-assign public IPv4 addresses.",
        remediation="aws.ec2.Subnet(map_public_ip_on_launch=False)",
        validator=subnet_public_ip_violations,
        resource_types=(SUBNET,),
    ),
    Rule(
        name="vpc-flow-logs",
        control="FSBP EC2.6",
        level=MANDATORY,
        description="Every VPC in the stack has a flow log for ALL (or REJECT) traffic.",
        remediation='aws.ec2.FlowLog(vpc_id=vpc.id, traffic_type="ALL", log_destination=<KMS log group>)',
        validator=flow_log_violations,
        kind="stack",
    ),
]
