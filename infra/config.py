"""Typed, validated stack configuration (pure: no Pulumi import).

``infra/__main__.py`` reads the ``aidc:`` namespace (keys ``cluster``, ``storage``, ``access``,
``tags``) and calls :func:`load_stack_config`; everything below is validated before any resource
is declared. A mistake raises one :class:`ConfigError` whose message names the key path, the
value and what is allowed, e.g.::

    aidc:cluster.nodePools[0].instanceType: 'p5.48xlarg' is not a known instance type;
    did you mean 'p5.48xlarge'?

Field defaults are stated once, here, in the field definitions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from infra.config_pools import (  # noqa: F401  (re-exported: callers import them from here)
    DEFAULT_AMI_PARAMETER,
    NAME_RE,
    Ami,
    Autoscaling,
    Capacity,
    ConfigModel,
    NodePool,
    RootVolume,
)
from infra.tags import RESERVED_TAG_PREFIXES

NAMESPACE = "aidc"
CONFIG_KEYS = ("cluster", "storage", "access", "tags")


#: The only retention periods CloudWatch Logs accepts (others fail at deploy time).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)  # fmt: skip


class ConfigError(ValueError):
    """A user mistake in stack config; the message is meant to be shown as is (no traceback)."""


class Cluster(ConfigModel):
    """Cluster-wide network settings and the node pools."""

    name: str = Field(..., pattern=rf"^({NAME_RE})$", description="Lowercase, <= 24 chars; prefixes resource names.")
    availability_zones: list[str] = Field(..., min_length=2, max_length=6)
    vpc_cidr: str = "10.42.0.0/16"
    nat_mode: Literal["single", "per-az"] = "single"
    ssm_endpoints: bool = Field(True, description="Interface endpoints for ssm, ssmmessages, ec2messages.")
    flow_log_retention_days: int = Field(90, description="One of CloudWatch Logs' retention values.")
    node_pools: list[NodePool] = Field(default_factory=list)

    @field_validator("availability_zones")
    @classmethod
    def _distinct_azs(cls, value: list[str]) -> list[str]:
        for az in value:
            if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d[a-z]", az):
                raise ValueError(f"{az!r} is not an availability zone name (like 'us-east-1a')")
        if len(set(value)) != len(value):
            raise ValueError(f"{value} lists an availability zone twice")
        return value

    @field_validator("flow_log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"{value} is not a CloudWatch Logs retention; allowed: {list(LOG_RETENTION_DAYS)}")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 network in CIDR form ({exc})") from None
        if net.version != 4 or not 16 <= net.prefixlen <= 22:
            raise ValueError(
                f"{value!r} must be an IPv4 network from /16 to /22 (AWS allows /16../28; "
                "GPU pools need room for many NICs)"
            )
        if not net.is_private:
            raise ValueError(f"{value!r} is not in a private range (10/8, 172.16/12, 192.168/16)")
        return value

    @model_validator(mode="after")
    def _pools(self) -> Cluster:
        names = [p.name for p in self.node_pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"nodePools: pool names must be unique, {dupes} repeated")
        for i, pool in enumerate(self.node_pools):
            unknown = [az for az in pool.availability_zones or [] if az not in self.availability_zones]
            if unknown:
                raise ValueError(
                    f"nodePools[{i}].availabilityZones: {unknown} not in the cluster's "
                    f"availabilityZones {self.availability_zones}"
                )
            cap = pool.capacity
            if cap.reservation_availability_zone and cap.reservation_availability_zone not in self.availability_zones:
                raise ValueError(
                    f"nodePools[{i}].capacity.reservationAvailabilityZone: {cap.reservation_availability_zone!r} "
                    f"is not one of the cluster's availabilityZones {self.availability_zones}"
                )
            if cap.reservation_availability_zone:
                # A reserved pool creates no placement group (an ODCR's group is the reservation's
                # own, in its AZ), so only the pool's subnets can land elsewhere.
                pool_azs = set(self.pool_azs(pool))
                if pool_azs != {cap.reservation_availability_zone}:
                    raise ValueError(
                        f"nodePools[{i}].capacity.reservationAvailabilityZone: reservation {cap.reservation_id} "
                        f"is in {cap.reservation_availability_zone!r} but the pool would be in "
                        f"{sorted(pool_azs)}; set availabilityZones: [{cap.reservation_availability_zone!r}]"
                    )
            self._one_az_per_placement_group(i, pool)
        return self

    def _one_az_per_placement_group(self, index: int, pool: NodePool) -> None:
        # A cluster placement group lives in one AZ: an Auto Scaling group spread over several
        # would fail every launch outside the AZ of the group's first instance.
        azs = self.pool_azs(pool)
        if not pool.uses_placement_group or len(set(azs)) < 2:
            return
        shown = "true" if pool.placement_group else "unset (a group by default for this pool)"
        where = (
            f"its availabilityZones are {azs}"
            if pool.availability_zones
            else f"an Auto Scaling pool without availabilityZones spans all cluster AZs {azs}"
        )
        raise ValueError(
            f"nodePools[{index}].placementGroup: {shown} needs the pool in one AZ (a cluster placement group "
            f"lives in a single AZ), but {where}; pin the pool to one AZ "
            f"(availabilityZones: [{azs[0]!r}]) or set placementGroup: false"
        )

    def pool_azs(self, pool: NodePool) -> list[str]:
        """The AZs a pool's instances go to (see :class:`NodePool` for the defaults)."""
        if pool.availability_zones:
            return list(pool.availability_zones)
        if pool.capacity.reservation_availability_zone:
            return [pool.capacity.reservation_availability_zone]
        if pool.autoscaling is not None and not pool.uses_efa:
            return list(self.availability_zones)
        return [self.availability_zones[0]]


class Fsx(ConfigModel):
    """FSx for Lustre scratch/persistent file system in the training pool's AZ, linked to the bucket."""

    enabled: bool = False
    # SCRATCH types are left out on purpose: FSx encrypts them with its own key, never the CMK.
    deployment_type: Literal["PERSISTENT_2", "PERSISTENT_1"] = "PERSISTENT_2"
    storage_capacity_gib: int = Field(1200, alias="storageCapacityGiB", ge=1200)
    per_unit_storage_throughput: int = Field(250, description="MB/s/TiB: PERSISTENT_2 125/250/500/1000.")
    s3_link: bool = Field(True, description="Data repository association with the checkpoint bucket.")
    file_system_path: str = Field("/checkpoints", pattern=r"^/[A-Za-z0-9_./-]*$")

    @model_validator(mode="after")
    def _sizes(self) -> Fsx:
        allowed = {"PERSISTENT_2": (125, 250, 500, 1000), "PERSISTENT_1": (50, 100, 200)}
        if self.deployment_type in allowed and self.per_unit_storage_throughput not in allowed[self.deployment_type]:
            raise ValueError(
                f"perUnitStorageThroughput: {self.per_unit_storage_throughput} is not allowed for "
                f"{self.deployment_type}; allowed: {list(allowed[self.deployment_type])}"
            )
        if self.storage_capacity_gib != 1200 and self.storage_capacity_gib % 2400:
            raise ValueError(f"storageCapacityGiB: {self.storage_capacity_gib} must be 1200 or a multiple of 2400")
        if self.s3_link and self.deployment_type != "PERSISTENT_2":
            raise ValueError("s3Link: needs deploymentType 'PERSISTENT_2' (data repository associations)")
        return self


class Storage(ConfigModel):
    """Checkpoint bucket (always), FSx for Lustre (optional), account EBS default encryption (opt-in)."""

    bucket_name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    noncurrent_version_days: int = Field(30, ge=1, le=3650)
    force_destroy: bool = False
    fsx: Fsx = Fsx()
    ebs_encryption_by_default: bool = Field(
        False, description="Account/region-wide EBS default encryption with the CMK (affects the whole account)."
    )


class Access(ConfigModel):
    """SSM Session Manager is always on; SSH from these CIDRs is optional and never from the world."""

    ssh_cidrs: list[str] = Field(default_factory=list)

    @field_validator("ssh_cidrs")
    @classmethod
    def _no_world(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network in CIDR form ({exc})") from None
            if net.prefixlen == 0:
                raise ValueError(f"{cidr!r} opens SSH to the whole internet; use SSM or a narrow CIDR")
            broadest = 8 if net.version == 4 else 32  # an IPv6 /32 is a whole ISP's allocation
            if net.prefixlen < broadest:
                raise ValueError(f"{cidr!r} is broader than /{broadest}; give the CIDRs you really connect from")
        return value


TagMap = dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]]


class StackConfig(ConfigModel):
    """Everything the program needs, validated; built by :func:`load_stack_config`."""

    stack: str
    region: str = "us-east-1"
    cluster: Cluster
    storage: Storage = Storage()
    access: Access = Access()
    tags: TagMap = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _user_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.lower().startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(f"tag key {key!r} uses a reserved prefix {RESERVED_TAG_PREFIXES}")
            # Nodes expose tags in instance metadata (launch template instance_metadata_tags), and
            # RunInstances then refuses keys outside this set.
            if not re.fullmatch(r"[A-Za-z0-9+\-=._:@]+", key) or key in (".", "..", "_index"):
                raise ValueError(
                    f"tag key {key!r} is not allowed: instance metadata tags take letters, digits and + - = . _ : @ "
                    "(no spaces or '/'; not '.', '..' or '_index')"
                )
        return value

    @model_validator(mode="after")
    def _cross(self) -> StackConfig:
        foreign = [az for az in self.cluster.availability_zones if not az.startswith(f"{self.region}")]
        if foreign:
            raise ValueError(
                f"cluster.availabilityZones: {foreign[0]!r} is not in region {self.region!r} (aws:region); "
                f"zones there are named like '{self.region}a', '{self.region}b'"
            )
        if self.storage.fsx.enabled and not self.train_pools:
            raise ValueError("storage.fsx.enabled: needs a node pool with role 'train' (FSx goes in its AZ)")
        return self

    @property
    def train_pools(self) -> list[NodePool]:
        return [p for p in self.cluster.node_pools if p.role == "train"]

    @property
    def fsx_az(self) -> str:
        pools = self.train_pools
        return self.cluster.pool_azs(pools[0])[0] if pools else self.cluster.availability_zones[0]


def _key_path(loc: tuple[Any, ...]) -> str:
    """('cluster', 'nodePools', 0, 'instanceType') -> 'aidc:cluster.nodePools[0].instanceType'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[")):
            continue
        else:
            path += f".{part}" if path else str(part)
    return f"{NAMESPACE}:{path}"


def _describe(error: dict[str, Any]) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    etype = error["type"]
    value = error.get("input")
    if etype == "extra_forbidden":
        return "is not a known setting"
    if etype == "missing":
        return "is required"
    if etype in ("literal_error", "enum"):
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{value!r} is not allowed; expected {allowed}"
    if etype == "value_error":
        return msg
    if etype == "string_pattern_mismatch":
        rule = _PATTERN_RULES.get(str(error.get("ctx", {}).get("pattern")), msg)
        return f"{value!r} is not allowed: {rule}"
    shown = "null" if value is None else repr(value)  # as the user wrote it in YAML
    if etype in ("model_type", "model_attributes_type", "dict_type"):
        return f"{shown} is not a mapping of settings (give key: value pairs under it)"
    if etype == "list_type":
        return f"{shown} is not a list (give a YAML list, e.g. [a, b])"
    return f"{value!r}: {msg}"


#: Field patterns as a person would state them (pydantic would print the regex).
_PATTERN_RULES = {
    rf"^({NAME_RE})$": "lowercase letters, digits and '-', starting with a letter, at most 24 characters",
    r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$": "an S3 bucket name: 3-63 lowercase letters, digits, '.' or '-'",
    r"^/[A-Za-z0-9_./-]*$": "an absolute path of letters, digits, '_', '.', '/' or '-'",
}


_FIELD_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9]*(?:\[\d+\])?(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\d+\])?)*): (.*)$", re.S)


def _problem(error: dict[str, Any]) -> str:
    """One line: key path, then what is wrong. Model-level checks name their field first
    ("count: ..."), which moves into the key path so every message starts with the full key."""
    path, text = _key_path(error["loc"]), _describe(error)
    match = _FIELD_PREFIX.match(text) if error["type"] == "value_error" else None
    if match:
        sep = "" if path.endswith(":") else "."
        path, text = f"{path}{sep}{match.group(1)}", match.group(2)
    return f"{path}: {text}"


def _format(exc: ValidationError) -> str:
    problems = [_problem(e) for e in exc.errors()]
    head = problems[0]
    if len(problems) > 1:
        head += "\n" + "\n".join(f"  also {p}" for p in problems[1:])
    return head


def _unknown_keys(raw: Mapping[str, Any]) -> None:
    for key in raw:
        if key not in CONFIG_KEYS:
            import difflib

            hint = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            tail = f"; did you mean 'aidc:{hint[0]}'?" if hint else f"; known keys: {', '.join(CONFIG_KEYS)}"
            raise ConfigError(f"aidc:{key}: is not a known setting{tail}")


def load_stack_config(raw: Mapping[str, Any], *, stack: str, region: str = "us-east-1") -> StackConfig:
    """Validate the ``aidc:`` namespace (a mapping of key -> parsed value) into a :class:`StackConfig`.

    Raises :class:`ConfigError` with one message that names the first problem's key path.
    """
    _unknown_keys(raw)
    if "cluster" not in raw:
        raise ConfigError("aidc:cluster: is required (name, availabilityZones, nodePools, ...)")
    try:
        return StackConfig.model_validate({**raw, "stack": stack, "region": region})
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None
