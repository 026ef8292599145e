"""EFA pool rules (ParallelCluster EfaSecurityGroupValidator, EfaMultiAzValidator, EfaPlacementGroupValidator).

A *pool* is an EFA launch template (a network interface of type ``efa`` or ``efa-only``) together
with the Auto Scaling groups, instances and EKS node groups that launch it; templates sharing an
``aidc:pool`` tag form one pool. Stack rules, because the facts are spread over several resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._model import MANDATORY, Rule, StackIndex, StackResource, StackViolation, as_list, get, read, read_list

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
INSTANCE = "aws:ec2/instance:Instance"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SUBNET = "aws:ec2/subnet:Subnet"
PLACEMENT_GROUP = "aws:ec2/placementGroup:PlacementGroup"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
EFA_KINDS = ("efa", "efa-only")
POOL_TAG = "aidc:pool"


def efa_interfaces(lt_props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The launch template's network interfaces of type efa / efa-only."""
    return [n for n in as_list(get(lt_props, "networkInterfaces")) if get(n, "interfaceType") in EFA_KINDS]


@dataclass
class Pool:
    """An EFA pool: its launch templates and the resources that launch them."""

    key: str
    templates: list[StackResource] = field(default_factory=list)
    launchers: list[StackResource] = field(default_factory=list)

    @property
    def anchor(self) -> StackResource:
        return self.templates[0]


def launch_template_refs(index: StackIndex, res: StackResource) -> list[StackResource]:
    """Launch templates an ASG, instance or node group launches."""
    found: list[StackResource] = []
    for prop, path in (("launchTemplate", ("launchTemplate",)),
                       ("mixedInstancesPolicy", ("mixedInstancesPolicy", "launchTemplate",
                                                 "launchTemplateSpecification"))):
        spec, unknown = read(res.props, *path)
        if spec is None and not unknown:
            continue
        value = None
        for key in ("id", "launchTemplateId", "name", "launchTemplateName"):
            candidate, _ = read(spec, key)
            if isinstance(candidate, str):
                value = candidate
                break
        found += index.resolve(res, prop, value, (LAUNCH_TEMPLATE,))
    return found


def efa_pools(index: StackIndex) -> list[Pool]:
    pools: dict[str, Pool] = {}
    by_template: dict[str, Pool] = {}
    for lt in index.of_type(LAUNCH_TEMPLATE):
        if not efa_interfaces(lt.props):
            continue
        key = get(lt.props, "tags", POOL_TAG) or lt.urn
        pool = pools.setdefault(key, Pool(key))
        pool.templates.append(lt)
        by_template[lt.urn] = pool
    for res in index.of_type(ASG, INSTANCE, NODE_GROUP):
        for lt in launch_template_refs(index, res):
            if lt.urn in by_template and res not in by_template[lt.urn].launchers:
                by_template[lt.urn].launchers.append(res)
    return list(pools.values())


# ----------------------------------------------------------------------------- security groups


def _refs(index: StackIndex, owner: StackResource, prop: str) -> set[str]:
    """URNs of the security groups ``owner``'s ``prop`` points at (value first, else dependency)."""
    value, _ = read(owner.props, prop)
    return {r.urn for r in index.resolve(owner, prop, value, (SECURITY_GROUP,))}


def _protocol_all(value: Any) -> bool:
    return str(value).lower() in ("-1", "all")


def _inline_self(sg: StackResource, direction: str) -> bool:
    """An inline rule with protocol -1 naming the group itself (``self``, or its own id after a refresh)."""
    own_id = sg.id or read(sg.props, "id")[0]
    for block in as_list(get(sg.props, direction)):
        if not _protocol_all(get(block, "protocol")):
            continue
        if get(block, "self") is True or (own_id and own_id in read_list(block, "securityGroups")[0]):
            return True
    return False


def _rule_self(index: StackIndex, sg: StackResource, direction: str) -> bool:
    """A separate rule resource opening all traffic between ``sg`` and itself in ``direction``."""
    for rule in index.of_type(SG_RULE, SG_INGRESS_RULE, SG_EGRESS_RULE):
        if rule.type == SG_RULE:
            if get(rule.props, "type") != direction or not _protocol_all(get(rule.props, "protocol")):
                continue
            peer_prop = "sourceSecurityGroupId"
        else:
            wanted = SG_INGRESS_RULE if direction == "ingress" else SG_EGRESS_RULE
            if rule.type != wanted or not _protocol_all(get(rule.props, "ipProtocol")):
                continue
            peer_prop = "referencedSecurityGroupId"
        if sg.urn not in _refs(index, rule, "securityGroupId"):
            continue
        if get(rule.props, "self") is True:
            return True
        if sg.urn in _refs(index, rule, peer_prop):
            return True
    return False


def self_referencing(index: StackIndex, sg: StackResource) -> bool:
    """True when ``sg`` allows all traffic from itself inbound AND to itself outbound."""
    return all(_inline_self(sg, d) or _rule_self(index, sg, d) for d in ("ingress", "egress"))


def _groups_of(index: StackIndex, lt: StackResource, ids: list[str], unknown: bool) -> list[StackResource]:
    found: dict[str, StackResource] = {}
    for prop in ("networkInterfaces", "vpcSecurityGroupIds"):
        for value in ids + ([None] if unknown or not ids else []):
            found.update({g.urn: g for g in index.resolve(lt, prop, value, (SECURITY_GROUP,))})
    return list(found.values())


def efa_security_group_violations(
    resources: Sequence[StackResource], config: Mapping | None = None
) -> list[StackViolation]:
    """Every EFA interface has a security group allowing all traffic to and from itself (in AND out).

    Security groups outside the stack cannot be inspected and are not judged; an EFA interface
    with no security group at all gets the VPC default group and fails.
    """
    index = StackIndex(resources)
    out = []
    for lt in index.of_type(LAUNCH_TEMPLATE):
        shared, shared_unknown = read_list(lt.props, "vpcSecurityGroupIds")
        for i, nic in enumerate(efa_interfaces(lt.props)):
            own, own_unknown = read_list(nic, "securityGroups")
            ids = [v for v in own + shared if isinstance(v, str)]
            groups = _groups_of(index, lt, ids, unknown=own_unknown or shared_unknown)
            if not ids and not groups:
                out.append(StackViolation(lt.urn, lt.name, f"{lt.name} EFA interface #{i} has no security "
                                          "group: attach one that allows all traffic to and from itself."))
            elif groups and not any(self_referencing(index, g) for g in groups):
                names = ", ".join(sorted({g.name for g in groups}))
                out.append(StackViolation(lt.urn, lt.name, f"{lt.name} EFA interface #{i}: none of its "
                                          f"security groups ({names}) allows ALL traffic from itself inbound "
                                          "AND to itself outbound; EFA traffic would be dropped. Add ingress "
                                          "and egress rules with protocol \"-1\" and self = true."))
    return out


# ----------------------------------------------------------------------------- AZ and placement


def _resolve_all(index: StackIndex, owner: StackResource, prop: str, values: list[Any], unknown: bool,
                 types: tuple[str, ...]) -> dict[str, StackResource]:
    """Resolve each known value; fall back to the dependency graph when something was unknown."""
    known = [v for v in values if isinstance(v, str)]
    found: dict[str, StackResource] = {}
    for value in known + ([None] if unknown or len(known) < len(values) else []):
        found.update({r.urn: r for r in index.resolve(owner, prop, value, types)})
    return found


def _subnets(index: StackIndex, pool: Pool) -> list[StackResource]:
    subnets: dict[str, StackResource] = {}
    for lt in pool.templates:
        nics, unknown = read_list(lt.props, "networkInterfaces")
        values = []
        for nic in as_list(nics):
            value, nic_unknown = read(nic, "subnetId")
            unknown = unknown or nic_unknown
            if value is not None:
                values.append(value)
        subnets.update(_resolve_all(index, lt, "networkInterfaces", values, unknown, (SUBNET,)))
    for res in pool.launchers:
        for prop in ("vpcZoneIdentifiers", "subnetIds", "subnetId"):
            values, unknown = read_list(res.props, prop)
            subnets.update(_resolve_all(index, res, prop, values, unknown, (SUBNET,)))
    return list(subnets.values())


def pool_zones(index: StackIndex, pool: Pool) -> set[str]:
    """Availability zones the pool can launch into (subnets' AZs, template/ASG zone settings)."""
    zones = set()
    for subnet in _subnets(index, pool):
        zone = read(subnet.props, "availabilityZone")[0] or read(subnet.props, "availabilityZoneId")[0]
        if isinstance(zone, str):
            zones.add(zone)
    for lt in pool.templates:
        zone, _ = read(lt.props, "placement", "availabilityZone")
        if isinstance(zone, str):
            zones.add(zone)
    for res in pool.launchers:
        zones |= {z for z in read_list(res.props, "availabilityZones")[0] if isinstance(z, str)}
    return zones


def efa_single_az_violations(resources: Sequence[StackResource], config: Mapping | None = None):
    """EFA does not cross availability zones: each pool launches into exactly one AZ."""
    index = StackIndex(resources)
    out = []
    for pool in efa_pools(index):
        zones = pool_zones(index, pool)
        if len(zones) > 1:
            lt = pool.anchor
            out.append(StackViolation(lt.urn, lt.name, f"EFA pool {pool.key if pool.key != lt.urn else lt.name} "
                                      f"spans availability zones {sorted(zones)}; EFA traffic does not cross "
                                      "AZs: give the pool subnets in one AZ."))
    return out


def pool_placement_groups(index: StackIndex, pool: Pool) -> tuple[list[str], list[StackResource]]:
    """(placement group names/ids as written, the PlacementGroup resources they resolve to)."""
    names: list[str] = []
    groups: dict[str, StackResource] = {}
    sources = [(lt, "placement", ("placement", key)) for lt in pool.templates for key in ("groupName", "groupId")]
    sources += [(r, "placementGroup", ("placementGroup",)) for r in pool.launchers]
    for res, prop, path in sources:
        value, unknown = read(res.props, *path)
        if value is None and not unknown:
            continue
        if isinstance(value, str):
            names.append(value)
        groups.update({g.urn: g for g in index.resolve(res, prop, value, (PLACEMENT_GROUP,))})
    return names, list(groups.values())


def uses_reserved_capacity(pool: Pool) -> bool:
    """The pool runs on a Capacity Block or targets a capacity reservation (ODCR)."""
    return any(get(lt.props, "instanceMarketOptions", "marketType") == "capacity-block"
               or read(lt.props, "capacityReservationSpecification", "capacityReservationTarget") != (None, False)
               for lt in pool.templates)


def efa_placement_group_violations(resources: Sequence[StackResource], config: Mapping | None = None):
    """Each EFA pool launches into one placement group of strategy ``cluster``.

    A pool on reserved capacity may go without one: a Capacity Block is already co-located
    (ParallelCluster advises no group), and an ODCR created outside any group serves no cluster
    group at all (``placement-capacity-compatible`` judges reservations declared in the stack).
    When such a pool does name a group, the same rules hold.
    """
    index = StackIndex(resources)
    out = []
    for pool in efa_pools(index):
        lt = pool.anchor
        names, groups = pool_placement_groups(index, pool)
        if uses_reserved_capacity(pool) and not names and not groups:
            continue
        known = {value for g in groups for value in (g.id, read(g.props, "name")[0], read(g.props, "id")[0])}
        distinct = {g.urn for g in groups} | {n for n in names if n not in known}
        if not distinct:
            out.append(StackViolation(lt.urn, lt.name, f"EFA launch template {lt.name} has no placement "
                                      "group: set placement.groupName to a cluster placement group."))
        elif len(distinct) > 1:
            out.append(StackViolation(lt.urn, lt.name, f"EFA pool of {lt.name} uses {len(distinct)} placement "
                                      "groups: use exactly one cluster placement group per pool."))
        for g in groups:
            if get(g.props, "strategy") != "cluster":
                out.append(StackViolation(g.urn, g.name, f"Placement group {g.name} of EFA pool {lt.name} has "
                                          f"strategy {get(g.props, 'strategy')!r}: use \"cluster\"."))
    return out


RULES = [
    Rule(name="efa-security-group-self-reference", control="ParallelCluster EfaSecurityGroupValidator",
         level=MANDATORY,
         description="EFA interfaces have a security group allowing all traffic to and from itself.",
         remediation='SecurityGroup ingress and egress {protocol: "-1", from_port: 0, to_port: 0, self: True}',
         validator=efa_security_group_violations, kind="stack"),
    Rule(name="efa-single-az", control="ParallelCluster EfaMultiAzValidator", level=MANDATORY,
         description="Each EFA pool launches into a single availability zone.",
         remediation="Give the pool's launch template / Auto Scaling group subnets of one AZ.",
         validator=efa_single_az_violations, kind="stack"),
    Rule(name="efa-cluster-placement-group", control="ParallelCluster EfaPlacementGroupValidator",
         level=MANDATORY,
         description="Each EFA pool uses exactly one placement group with strategy cluster.",
         remediation='aws.ec2.PlacementGroup(strategy="cluster"); launch template placement.group_name = pg.name',
         validator=efa_placement_group_violations, kind="stack"),
]
