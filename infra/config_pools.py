"""Node-pool settings of the stack configuration (``aidc:cluster.nodePools[*]``), and the base
model every config section shares. Pure pydantic: :mod:`infra.config` assembles the whole stack
config from these and formats validation errors (see there for the error contract).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra import catalog

DEFAULT_AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
NAME_RE = r"[a-z][a-z0-9-]{0,22}[a-z0-9]|[a-z]"


class ConfigModel(BaseModel):
    """camelCase keys in YAML, snake_case in Python; unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Lax mode would read `count: true` as 1 node; numeric strings ('2') stay accepted because
        # `pulumi config set` stores strings.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation in (int, float, int | None, float | None):
                raise ValueError(f"{str(value).lower()} is a boolean; a number is expected")
        return value


#: gp3 limits RunInstances enforces (EC2 API ``EbsBlockDevice``, raised in September 2025):
#: IOPS 3,000-80,000 and at most 500 per GiB; throughput 125-2,000 MiB/s and at most 0.25 MiB/s
#: per provisioned IOPS. A template that breaks them is accepted and every launch fails.
GP3_MAX_IOPS_PER_GIB = 500
GP3_IOPS_PER_MIBPS = 4  # 0.25 MiB/s per IOPS


class RootVolume(ConfigModel):
    """gp3 root volume, always encrypted with the stack's CMK. ``iops`` at most 500 per GiB of
    ``sizeGiB``; ``throughputMiBps`` at most ``iops`` / 4 (0.25 MiB/s per IOPS)."""

    size_gib: int = Field(
        200, alias="sizeGiB", ge=50, le=16384, description="Root volume size in GiB (DLAMIs need >= 50)."
    )
    iops: int = Field(3000, ge=3000, le=80000, description="gp3 IOPS (3000-80000, <= 500 per GiB).")
    throughput_mibps: int = Field(
        125, ge=125, le=2000, alias="throughputMiBps", description="gp3 throughput in MiB/s (125-2000, <= iops/4)."
    )

    @model_validator(mode="after")
    def _gp3_ratios(self) -> RootVolume:
        most_iops = self.size_gib * GP3_MAX_IOPS_PER_GIB
        if self.iops > most_iops:
            need = -(-self.iops // GP3_MAX_IOPS_PER_GIB)
            raise ValueError(
                f"iops: {self.iops} is more than gp3 allows for sizeGiB {self.size_gib} (500 IOPS per GiB, at most "
                f"{most_iops}); lower iops or set sizeGiB to at least {need}"
            )
        most_throughput = self.iops // GP3_IOPS_PER_MIBPS
        if self.throughput_mibps > most_throughput:
            raise ValueError(
                f"throughputMiBps: {self.throughput_mibps} is more than gp3 allows for iops {self.iops} (0.25 MiB/s "
                f"per IOPS, at most {most_throughput}); lower throughputMiBps or set iops to at least "
                f"{self.throughput_mibps * GP3_IOPS_PER_MIBPS}"
            )
        return self


CapacityType = Literal["on-demand", "spot", "capacity-block", "odcr"]


class Capacity(ConfigModel):
    """Where the instances' capacity comes from.

    ``capacity-block`` and ``odcr`` target ``reservationId``; ``reservationInstanceCount`` and
    ``reservationAvailabilityZone`` describe that reservation (as shown by the console or
    ``aws ec2 describe-capacity-reservations``) so the count and AZ can be checked before deploy:
    a Capacity Block's pool ``count`` equals its instance count; an ODCR's pool may use part of it
    (``count`` at most its instance count).
    ``reservationPlacementGroup`` (``odcr`` only) is the name of the existing cluster placement
    group the ODCR was created in (the end of its ``PlacementGroupArn``): such a reservation only
    serves launches into that group, so the pool launches there instead of into a new one.
    """

    type: CapacityType = "on-demand"
    reservation_id: str | None = None
    reservation_instance_count: int | None = Field(None, ge=1)
    reservation_availability_zone: str | None = None
    reservation_placement_group: str | None = None

    @model_validator(mode="after")
    def _reservation_fields(self) -> Capacity:
        reserved = self.type in ("capacity-block", "odcr")
        if reserved:
            for field in ("reservation_id", "reservation_instance_count", "reservation_availability_zone"):
                if getattr(self, field) is None:
                    raise ValueError(f"{to_camel(field)} is required when type is {self.type!r}")
            if not re.fullmatch(r"cr-[0-9a-f]{8,17}", self.reservation_id or ""):
                raise ValueError(
                    f"reservationId {self.reservation_id!r} is not a capacity reservation id (cr-xxxxxxxx)"
                )
        elif self.reservation_id is not None:
            raise ValueError(f"reservationId is only allowed with type 'capacity-block' or 'odcr', not {self.type!r}")
        if self.reservation_placement_group is not None:
            self._check_reservation_placement_group(self.reservation_placement_group)
        return self

    def _check_reservation_placement_group(self, group: str) -> None:
        if self.type != "odcr":
            why = (
                "Capacity Blocks are not created in placement groups (AWS delivers a block co-located)"
                if self.type == "capacity-block"
                else "it names the placement group an ODCR was created in"
            )
            raise ValueError(
                f"reservationPlacementGroup: only allowed with type 'odcr', not {self.type!r}; {why}: remove it"
            )
        if group.startswith("arn:"):
            raise ValueError(
                f"reservationPlacementGroup: {group!r} is an ARN; give the group's name "
                f"({group.rsplit('/', 1)[-1]!r}, the part after 'placement-group/')"
            )
        if not re.fullmatch(r"\S{1,255}", group):
            raise ValueError(
                f"reservationPlacementGroup: {group!r} is not a placement group name (1-255 characters, no spaces)"
            )


class Ami(ConfigModel):
    """Node image: an SSM parameter (default: DL Base OSS Nvidia Driver GPU AMI, Ubuntu 22.04) or an id."""

    ssm_parameter: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Ami:
        if self.ssm_parameter and self.id:
            raise ValueError("ssmParameter and id are mutually exclusive")
        if self.id and not re.fullmatch(r"ami-[0-9a-f]{8,17}", self.id):
            raise ValueError(f"id {self.id!r} is not an AMI id (ami-xxxxxxxx)")
        return self

    @property
    def parameter(self) -> str | None:
        if self.id:
            return None
        return self.ssm_parameter or DEFAULT_AMI_PARAMETER


class Autoscaling(ConfigModel):
    """Auto Scaling group bounds (inference pools only); desired capacity starts at the pool count."""

    min_size: int = Field(0, ge=0)
    max_size: int = Field(..., ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_size > self.max_size:
            raise ValueError(f"minSize ({self.min_size}) must not exceed maxSize ({self.max_size})")
        return self


class NodePool(ConfigModel):
    """One homogeneous group of GPU nodes.

    ``efa`` unset means: on when the type has EFA and the role is ``train``. ``placementGroup``
    unset means, by ``capacity.type``: capacity-block - none (AWS delivers the block co-located; a
    group adds a constraint outside the reservation, and ParallelCluster warns against it); odcr -
    the reservation's own group when ``capacity.reservationPlacementGroup`` is set (it only serves
    launches into that group), else as on-demand; on-demand/spot - a new cluster group exactly when
    the pool uses EFA. An explicit ``placementGroup: true`` keeps a new group on a Capacity Block
    (a stack deployed before this default cannot delete a group its instances are in); CrossGuard
    warns about it. ``availabilityZones`` unset means: the first cluster AZ (EFA pools must stay in
    one AZ), or all cluster AZs for Auto Scaling pools. A pool with a placement group must be in one
    AZ (a cluster placement group lives in a single AZ): an Auto Scaling pool with
    ``placementGroup: true`` names its one AZ in ``availabilityZones``.

    Node image: fixed pools' instances never follow a new AMI on their own (``ami`` unset reads
    the DLAMI's ``.../latest/ami-id`` parameter on every ``pulumi up``, which moves the launch
    template to a new version): replacing a node is deliberate, ``pulumi up --replace <urn>``.
    Auto Scaling pools launch new instances from the newest template version.
    """

    name: str = Field(..., pattern=rf"^({NAME_RE})$")
    role: Literal["train", "infer", "head"] = "train"
    instance_type: str
    count: int = Field(1, ge=0, le=512)
    efa: bool | None = None
    placement_group: bool | None = None
    availability_zones: list[str] | None = Field(None, min_length=1)
    capacity: Capacity = Capacity()
    root_volume: RootVolume = RootVolume()
    ami: Ami = Ami()
    imds_hop_limit: int = Field(1, ge=1, le=3, description="IMDSv2 hop limit; 2 when containers call IMDS.")
    autoscaling: Autoscaling | None = None

    @field_validator("instance_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        try:
            catalog.instance_type(value)
        except catalog.UnknownInstanceType as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def spec(self) -> catalog.InstanceType:
        return catalog.instance_type(self.instance_type)

    @property
    def uses_efa(self) -> bool:
        if self.efa is None:
            return self.spec.efa_supported and self.role == "train"
        return self.efa

    @property
    def uses_placement_group(self) -> bool:
        if self.placement_group is not None:
            return self.placement_group
        if self.capacity.type == "capacity-block":
            return False
        if self.capacity.reservation_placement_group is not None:
            return True
        return self.uses_efa

    @property
    def existing_placement_group(self) -> str | None:
        """The name of a group the pool launches into that the stack must not create (the ODCR's)."""
        return self.capacity.reservation_placement_group if self.uses_placement_group else None

    @model_validator(mode="after")
    def _pool_rules(self) -> NodePool:
        spec = self.spec
        if self.efa and not spec.efa_supported:
            with_efa = sorted(t.name for t in catalog.CATALOG.values() if t.family == spec.family and t.efa_supported)
            hint = f" ({spec.family} types with EFA: {', '.join(with_efa)})" if with_efa else ""
            raise ValueError(f"efa: {self.instance_type!r} has no EFA interfaces{hint}")
        if self.uses_efa and self.availability_zones and len(set(self.availability_zones)) > 1:
            raise ValueError(
                f"availabilityZones: {self.availability_zones} spans several AZs, but EFA traffic cannot "
                "cross AZs; give exactly one AZ for an EFA pool"
            )
        cap = self.capacity
        if cap.type == "spot" and self.uses_efa:
            raise ValueError(
                "capacity.type: 'spot' is not allowed for an EFA pool (interruptions break collectives); "
                "use on-demand, odcr or capacity-block"
            )
        self._placement_rules()
        self._reservation_count_rules()
        if self.autoscaling is not None:
            if self.role != "infer":
                raise ValueError(f"autoscaling: only allowed for role 'infer', not {self.role!r}")
            if cap.type in ("capacity-block", "odcr"):
                raise ValueError("autoscaling: cannot be combined with a capacity reservation")
            if not self.autoscaling.min_size <= self.count <= self.autoscaling.max_size:
                raise ValueError(
                    f"count: {self.count} must lie within autoscaling minSize..maxSize "
                    f"({self.autoscaling.min_size}..{self.autoscaling.max_size})"
                )
        return self

    def _reservation_count_rules(self) -> None:
        cap = self.capacity
        # A Capacity Block is paid for whole and its nodes are one job's: the pool is the block.
        if cap.type == "capacity-block" and cap.reservation_instance_count != self.count:
            raise ValueError(
                f"count: {self.count} differs from capacity.reservationInstanceCount "
                f"({cap.reservation_instance_count}) of reservation {cap.reservation_id}; they must be equal"
            )
        # An ODCR may serve fewer instances than it holds (the rest stays open to other launches);
        # more would launch outside it, as on-demand or not at all.
        held = cap.reservation_instance_count
        if cap.type == "odcr" and held is not None and self.count > held:
            raise ValueError(
                f"count: {self.count} is more than capacity.reservationInstanceCount "
                f"({held}) of ODCR {cap.reservation_id}; a pool may use part of an ODCR, "
                "not more than it holds"
            )

    def _placement_rules(self) -> None:
        # ParallelCluster's PlacementGroupCapacityReservationValidator: a reservation created in a
        # placement group only serves launches into that group. (A group on a Capacity Block, or a
        # new group for an ODCR made outside any, is only a warning there, and in the policy pack:
        # a stack deployed before may hold instances in its group, which AWS cannot delete.)
        cap = self.capacity
        if self.placement_group is False and cap.reservation_placement_group is not None:
            raise ValueError(
                f"placementGroup: false contradicts capacity.reservationPlacementGroup "
                f"{cap.reservation_placement_group!r}: reservation {cap.reservation_id} only serves launches into "
                "that group; remove placementGroup (or set it to true)"
            )
