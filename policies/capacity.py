"""Capacity and EFA-layout rules (ParallelCluster PlacementGroupCapacityTypeValidator,
PlacementGroupCapacityReservationValidator, CapacityReservationValidator, CapacityTypeValidator,
EfaValidator).

ParallelCluster's semantics, restated for launch templates:
- a Capacity Block (``instanceMarketOptions.marketType = "capacity-block"``) must target a
  reservation, and should launch into no placement group: AWS delivers the block co-located, and
  a cluster group adds a placement constraint outside the reservation (InsufficientInstanceCapacity
  although the block has room). ParallelCluster only *warns* about this, so the rule is advisory;
  aidc creates no group for a Capacity Block pool unless ``placementGroup: true`` keeps one (a
  stack deployed earlier cannot delete a group its instances are in). A block's AZ is not a stack
  resource, so this pack does not judge it;
- a targeted ODCR created in a placement group (``placementGroupArn``) only serves launches into
  that same group. An ODCR without one still serves matching launches into a cluster group, but
  the group's constraint may ask for capacity outside the reservation (ParallelCluster warns); for
  a reservation the stack itself declares, create it in the pool's group;
- the reservation's instance type and AZ must match the template's and its subnets'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infra.catalog import CATALOG

from ._model import (
    ADVISORY,
    MANDATORY,
    Rule,
    StackIndex,
    StackResource,
    StackViolation,
    as_list,
    get,
    read,
    short,
)
from .gpu import (
    LAUNCH_TEMPLATE,
    PLACEMENT_GROUP,
    Pool,
    efa_interfaces,
    launch_template_refs,
    pool_placement_groups,
    pool_zones,
)

INSTANCE = "aws:ec2/instance:Instance"
CAPACITY_RESERVATION = "aws:ec2/capacityReservation:CapacityReservation"
ASG = "aws:autoscaling/group:Group"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


def reservation_target(props: Mapping[str, Any]) -> tuple[Any, bool]:
    """(capacityReservationId or resource group ARN, unknown) of a template or instance."""
    target, unknown = read(props, "capacityReservationSpecification", "capacityReservationTarget")
    if target is None:
        return None, unknown
    rid, rid_unknown = read(target, "capacityReservationId")
    arn, arn_unknown = read(target, "capacityReservationResourceGroupArn")
    return rid or arn, rid_unknown or arn_unknown


def capacity_block_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """CapacityTypeValidator: a capacity-block launch names the reservation it runs in."""
    if get(props, "instanceMarketOptions", "marketType") != "capacity-block":
        return []
    target, unknown = reservation_target(props)
    if target or unknown:
        return []
    return [f"{short(resource_type)} uses marketType \"capacity-block\" without capacityReservationSpecification."
            "capacityReservationTarget.capacityReservationId: name the Capacity Block's reservation id."]


def capacity_block_placement_violations(resource_type: str, props: Mapping[str, Any],
                                        config: Mapping | None = None):
    """PlacementGroupCapacityTypeValidator: a capacity-block launch names no placement group."""
    if get(props, "instanceMarketOptions", "marketType") != "capacity-block":
        return []
    paths = [("placementGroup",)] if resource_type == INSTANCE else [("placement", "groupName"),
                                                                      ("placement", "groupId")]
    for path in paths:
        group, unknown = read(props, *path)
        if group or unknown:
            shown = f" {group!r}" if isinstance(group, str) else ""
            return [f"{short(resource_type)} uses marketType \"capacity-block\" and launches into placement group"
                    f"{shown} ({'.'.join(path)}): the block is delivered co-located, and the group's constraint "
                    "asks for capacity outside it, so launches can fail with InsufficientInstanceCapacity. "
                    "Remove the placement group."]
    return []


def _slot(nic: Mapping[str, Any]) -> tuple[int, int]:
    """(networkCardIndex, deviceIndex) of a launch-template NIC; both default to 0 as in EC2."""
    return int(get(nic, "networkCardIndex", default=0)), int(get(nic, "deviceIndex", default=0))


def _slot_violations(nics: list[Mapping[str, Any]], itype: Any, spec: Any) -> list[str]:
    """Every NIC on a card the type has, no slot used twice, and a primary NIC that is not efa-only."""
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for i, nic in enumerate(nics):
        card, device = _slot(nic)
        kind = get(nic, "interfaceType", default="interface")
        if spec is not None and card >= spec.network_cards:
            out.append(f"LaunchTemplate networkInterfaces[{i}] ({kind}) has networkCardIndex {card}, but {itype} "
                       f"has {spec.network_cards} network card(s), indexes 0-{spec.network_cards - 1}.")
        if (card, device) in seen:
            out.append(f"LaunchTemplate networkInterfaces[{i}] ({kind}) reuses network card {card} / device "
                       f"{device}: every (networkCardIndex, deviceIndex) pair must be unique.")
        seen.add((card, device))
    primary = [n for n in nics if _slot(n) == (0, 0)]
    if not primary:
        out.append("LaunchTemplate networkInterfaces has no primary NIC at network card 0 / device 0: add one of "
                   "type interface (or efa) there; efa-only devices carry no IP address.")
    elif any(get(n, "interfaceType") == "efa-only" for n in primary):
        out.append("An efa-only interface sits at network card 0 / device 0, the primary slot: the primary "
                   "NIC must be type interface (or efa); put efa-only at device 1 or on another card.")
    return out


def efa_layout_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """EfaValidator: EFA interfaces fit the instance type (catalog: EFA count, network cards), every
    (card, device) slot is used once, and the primary NIC (card 0 / device 0) exists and is not efa-only."""
    nics = efa_interfaces(props)
    if not nics:
        return []
    itype = get(props, "instanceType")
    spec = CATALOG.get(itype) if isinstance(itype, str) else None
    all_nics = [n for n in as_list(get(props, "networkInterfaces")) if isinstance(n, Mapping)]
    out = []
    if spec is not None and spec.efa_interfaces == 0:
        out.append(f"Instance type {itype} does not support EFA, but the template declares {len(nics)} EFA "
                   "interface(s).")
    elif spec is not None and len(nics) > spec.efa_interfaces:
        out.append(f"{len(nics)} EFA interfaces declared; {itype} supports at most {spec.efa_interfaces} "
                   "(see infra.catalog.network_interface_layout).")
    return out + _slot_violations(all_nics, itype, spec)


def _reservation(index: StackIndex, owner: StackResource) -> list[StackResource]:
    target, unknown = reservation_target(owner.props)
    if target is None and not unknown:
        return []
    return index.resolve(owner, "capacityReservationSpecification", target, (CAPACITY_RESERVATION,))


def _pool_of(index: StackIndex, lt: StackResource) -> Pool:
    pool = Pool(lt.urn, [lt])
    for res in index.of_type(ASG, INSTANCE, NODE_GROUP):
        if lt in launch_template_refs(index, res):
            pool.launchers.append(res)
    return pool


def _reservation_findings(index: StackIndex, pool: Pool, cr: StackResource) -> list[str]:
    lt = pool.anchor
    found = []
    itype, cr_type = get(lt.props, "instanceType"), get(cr.props, "instanceType")
    if isinstance(itype, str) and isinstance(cr_type, str) and itype != cr_type:
        found.append(f"reservation {cr.name} is for {cr_type} but the template launches {itype}")
    zones, cr_zone = pool_zones(index, pool), get(cr.props, "availabilityZone")
    if isinstance(cr_zone, str) and zones and zones != {cr_zone}:
        found.append(f"reservation {cr.name} is in {cr_zone} but the pool's subnets are in {sorted(zones)}")
    names, groups = pool_placement_groups(index, pool)
    cr_pg_arn, _ = read(cr.props, "placementGroupArn")
    cr_groups = index.resolve(cr, "placementGroupArn", cr_pg_arn, (PLACEMENT_GROUP,))
    if cr_groups or cr_pg_arn:
        same = {g.urn for g in cr_groups} & {g.urn for g in groups} or (
            isinstance(cr_pg_arn, str) and cr_pg_arn.rsplit("/", 1)[-1] in names)
        if not same:
            found.append(f"reservation {cr.name} was created in a placement group the pool does not launch into")
    elif groups or names:
        found.append(f"reservation {cr.name} has no placementGroupArn, but the pool launches into a placement "
                     "group: the group's placement constraint may ask for capacity outside the reservation; create the "
                     "reservation in the pool's group")
    return found


def placement_capacity_violations(resources: Sequence[StackResource], config: Mapping | None = None):
    """Placement group and capacity reservation agree (see the module docstring for the semantics)."""
    index = StackIndex(resources)
    out = []
    for lt in index.of_type(LAUNCH_TEMPLATE):
        target, unknown = reservation_target(lt.props)
        if target is None and not unknown:
            continue
        pool = _pool_of(index, lt)
        for cr in _reservation(index, lt):
            for finding in _reservation_findings(index, pool, cr):
                out.append(StackViolation(lt.urn, lt.name, f"{lt.name}: {finding}."))
    return out


RULES = [
    Rule(name="placement-capacity-compatible",
         control="ParallelCluster PlacementGroupCapacityTypeValidator, PlacementGroupCapacityReservationValidator",
         level=MANDATORY,
         description="Placement groups agree with the targeted capacity reservation or Capacity Block.",
         remediation="ODCR: create it with placement_group_arn = the pool's cluster group, same instance type "
                     "and AZ as the pool.",
         validator=placement_capacity_violations, kind="stack"),
    Rule(name="capacity-block-targets-reservation", control="ParallelCluster CapacityTypeValidator",
         level=MANDATORY,
         description="Capacity-block launches target their reservation id.",
         remediation='capacity_reservation_specification={"capacity_reservation_target": '
                     '{"capacity_reservation_id": "cr-..."}}',
         validator=capacity_block_violations, resource_types=(LAUNCH_TEMPLATE, INSTANCE)),
    # Advisory, as in ParallelCluster (a warning): a group can still work when AWS happens to
    # place it over the block's hosts, and the failure shows at launch, not as a security gap.
    Rule(name="capacity-block-no-placement-group", control="ParallelCluster PlacementGroupCapacityTypeValidator",
         level=ADVISORY,
         description="Capacity-block launches name no placement group (the block is already co-located; "
                     "advisory because ParallelCluster only warns).",
         remediation="Drop placement.group_name (launch template) / placement_group (instance) for Capacity "
                     "Block launches; aidc pools on a Capacity Block create none.",
         validator=capacity_block_placement_violations, resource_types=(LAUNCH_TEMPLATE, INSTANCE)),
    Rule(name="efa-interfaces-match-instance-type", control="ParallelCluster EfaValidator", level=MANDATORY,
         description="EFA interfaces fit the instance type's EFA count and network cards, each card/device slot is "
                     "used once, and the primary NIC exists and is not efa-only.",
         remediation="Build network_interfaces from infra.catalog.network_interface_layout(instance_type).",
         validator=efa_layout_violations, resource_types=(LAUNCH_TEMPLATE,)),
]
