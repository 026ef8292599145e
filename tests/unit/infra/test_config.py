"""Stack config validation: one error, naming the key path, the value and what is allowed."""

import copy

import pytest

from infra.config import DEFAULT_AMI_PARAMETER, ConfigError, load_stack_config
from infra.offline import load_stack_yaml

BASE = {
    "cluster": {
        "name": "dev",
        "availabilityZones": ["us-east-1a", "us-east-1b"],
        "nodePools": [{"name": "gpu", "instanceType": "p5.48xlarge", "count": 2}],
    }
}
CB = {
    "type": "capacity-block",
    "reservationId": "cr-0123456789abcdef0",
    "reservationInstanceCount": 2,
    "reservationAvailabilityZone": "us-east-1a",
}

ODCR = {**CB, "type": "odcr"}
PG_ARN = "arn:aws:ec2:us-east-1:111122223333:placement-group/odcr-pg"
#: An Auto Scaling inference pool that asks for a placement group (default AZs: all cluster AZs).
SERVE_IN_GROUP = {"name": "serve", "role": "infer", "instanceType": "g6e.12xlarge", "count": 2, "placementGroup": True,
                  "autoscaling": {"maxSize": 4}}  # fmt: skip


def load(mutate=None):
    raw = copy.deepcopy(BASE)
    if mutate:
        mutate(raw)
    return load_stack_config(raw, stack="test")


def pool(raw):
    return raw["cluster"]["nodePools"][0]


def error_of(mutate) -> str:
    with pytest.raises(ConfigError) as info:
        load(mutate)
    return str(info.value)


@pytest.mark.parametrize("stack", ["dev", "p5", "inference"])
def test_example_stacks_validate(stack):
    raw = load_stack_yaml(stack)
    cfg = load_stack_config({k[5:]: v for k, v in raw.items() if k.startswith("aidc:")}, stack=stack)
    assert cfg.cluster.node_pools


def test_defaults_are_safe():
    cfg = load()
    p = cfg.cluster.node_pools[0]
    assert p.uses_efa and p.uses_placement_group and p.imds_hop_limit == 1
    assert p.ami.parameter == DEFAULT_AMI_PARAMETER
    assert cfg.cluster.pool_azs(p) == ["us-east-1a"]
    assert cfg.access.ssh_cidrs == [] and cfg.cluster.nat_mode == "single"


# The broken configs a user most often writes, each with the exact message it must produce.
CASES = {
    "typo in instance type": (
        lambda r: pool(r).update(instanceType="p5.48xlarg"),
        "aidc:cluster.nodePools[0].instanceType: 'p5.48xlarg' is not a known instance type; "
        "did you mean 'p5.48xlarge'?",
    ),
    "unknown NAT mode": (
        lambda r: r["cluster"].update(natMode="double"),
        "aidc:cluster.natMode: 'double' is not allowed; expected 'single' or 'per-az'",
    ),
    "SSH open to the world": (
        lambda r: r.update(access={"sshCidrs": ["0.0.0.0/0"]}),
        "aidc:access.sshCidrs: '0.0.0.0/0' opens SSH to the whole internet; use SSM or a narrow CIDR",
    ),
    "misspelled key": (
        lambda r: r["cluster"].update(nodPools=[]),
        "aidc:cluster.nodPools: is not a known setting",
    ),
    "misspelled top-level key": (
        lambda r: r.update(clustr={}),
        "aidc:clustr: is not a known setting; did you mean 'aidc:cluster'?",
    ),
    "bad CIDR": (
        lambda r: r["cluster"].update(vpcCidr="10.0.0.0/8"),
        "aidc:cluster.vpcCidr: '10.0.0.0/8' must be an IPv4 network from /16 to /22 "
        "(AWS allows /16../28; GPU pools need room for many NICs)",
    ),
    "one AZ": (
        lambda r: r["cluster"].update(availabilityZones=["us-east-1a"]),
        "aidc:cluster.availabilityZones: ['us-east-1a']: List should have at least 2 items after validation, not 1",
    ),
    "root volume too small": (
        lambda r: pool(r).update(rootVolume={"sizeGiB": 10}),
        "aidc:cluster.nodePools[0].rootVolume.sizeGiB: 10: Input should be greater than or equal to 50",
    ),
    "reserved tag prefix": (
        lambda r: r.update(tags={"aws:owner": "me"}),
        "aidc:tags: tag key 'aws:owner' uses a reserved prefix ('aws:', 'aidc:')",
    ),
    "FSx without a training pool": (
        lambda r: (pool(r).update(role="infer"), r.update(storage={"fsx": {"enabled": True}})),
        "aidc:storage.fsx.enabled: needs a node pool with role 'train' (FSx goes in its AZ)",
    ),
    "FSx size": (
        lambda r: r.update(storage={"fsx": {"enabled": True, "storageCapacityGiB": 1300}}),
        "aidc:storage.fsx.storageCapacityGiB: 1300 must be 1200 or a multiple of 2400",
    ),
    "IPv6 SSH range of world scale": (
        lambda r: r.update(access={"sshCidrs": ["2000::/3"]}),
        "aidc:access.sshCidrs: '2000::/3' is broader than /32; give the CIDRs you really connect from",
    ),
    "boolean for a count": (
        lambda r: pool(r).update(count=True),
        "aidc:cluster.nodePools[0].count: true is a boolean; a number is expected",
    ),
    "cluster name as a regex would say it": (
        lambda r: r["cluster"].update(name="Dev_Cluster"),
        "aidc:cluster.name: 'Dev_Cluster' is not allowed: lowercase letters, digits and '-', starting with a "
        "letter, at most 24 characters",
    ),
    "bucket name": (
        lambda r: r.update(storage={"bucketName": "My_Bucket"}),
        "aidc:storage.bucketName: 'My_Bucket' is not allowed: an S3 bucket name: 3-63 lowercase letters, "
        "digits, '.' or '-'",
    ),
    "cluster left empty": (
        lambda r: r.update(cluster=None),
        "aidc:cluster: null is not a mapping of settings (give key: value pairs under it)",
    ),
    "cluster as a word": (
        lambda r: r.update(cluster="dev"),
        "aidc:cluster: 'dev' is not a mapping of settings (give key: value pairs under it)",
    ),
    "tag key that instance metadata refuses": (
        lambda r: r.update(tags={"kubernetes.io/cluster/x": "owned"}),
        "aidc:tags: tag key 'kubernetes.io/cluster/x' is not allowed: instance metadata tags take letters, "
        "digits and + - = . _ : @ (no spaces or '/'; not '.', '..' or '_index')",
    ),
    "pools as a word": (
        lambda r: r["cluster"].update(nodePools="gpu"),
        "aidc:cluster.nodePools: 'gpu' is not a list (give a YAML list, e.g. [a, b])",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_config_has_one_clear_message(case):
    mutate, expected = CASES[case]
    message = error_of(mutate)
    assert message == expected
    assert "Traceback" not in message and "\n" not in message


# Issue 3's invalid pool configurations (the offering check needs the program: see test_compute).
POOL_CASES = {
    "EFA pool in two AZs": (
        lambda r: pool(r).update(availabilityZones=["us-east-1a", "us-east-1b"]),
        "aidc:cluster.nodePools[0].availabilityZones: ['us-east-1a', 'us-east-1b'] spans several AZs, but EFA "
        "traffic cannot cross AZs; give exactly one AZ for an EFA pool",
    ),
    "EFA on a type without EFA": (
        lambda r: pool(r).update(instanceType="g6.xlarge", efa=True),
        "aidc:cluster.nodePools[0].efa: 'g6.xlarge' has no EFA interfaces (g6 types with EFA: g6.12xlarge, "
        "g6.16xlarge, g6.24xlarge, g6.48xlarge, g6.8xlarge)",
    ),
    "capacity block count differs": (
        lambda r: pool(r).update(count=4, capacity=CB),
        "aidc:cluster.nodePools[0].count: 4 differs from capacity.reservationInstanceCount (2) of reservation "
        "cr-0123456789abcdef0; they must be equal",
    ),
    "ODCR smaller than the pool": (
        lambda r: pool(r).update(count=3, capacity=ODCR),
        "aidc:cluster.nodePools[0].count: 3 is more than capacity.reservationInstanceCount (2) of ODCR "
        "cr-0123456789abcdef0; a pool may use part of an ODCR, not more than it holds",
    ),
    "capacity block larger than the pool": (
        lambda r: pool(r).update(count=1, capacity=CB),
        "aidc:cluster.nodePools[0].count: 1 differs from capacity.reservationInstanceCount (2) of reservation "
        "cr-0123456789abcdef0; they must be equal",
    ),
    "placement group over two AZs (Auto Scaling pool)": (
        lambda r: r["cluster"]["nodePools"].append(dict(SERVE_IN_GROUP)),
        "aidc:cluster.nodePools[1].placementGroup: true needs the pool in one AZ (a cluster placement group lives "
        "in a single AZ), but an Auto Scaling pool without availabilityZones spans all cluster AZs "
        "['us-east-1a', 'us-east-1b']; pin the pool to one AZ (availabilityZones: ['us-east-1a']) or set "
        "placementGroup: false",
    ),
    "placement group over two listed AZs": (
        lambda r: pool(r).update(
            instanceType="g6.xlarge", placementGroup=True, availabilityZones=["us-east-1b", "us-east-1a"]
        ),
        "aidc:cluster.nodePools[0].placementGroup: true needs the pool in one AZ (a cluster placement group lives "
        "in a single AZ), but its availabilityZones are ['us-east-1b', 'us-east-1a']; pin the pool to one AZ "
        "(availabilityZones: ['us-east-1b']) or set placementGroup: false",
    ),
    "gp3 throughput above 0.25 MiB/s per IOPS": (
        lambda r: pool(r).update(rootVolume={"iops": 3000, "throughputMiBps": 1000}),
        "aidc:cluster.nodePools[0].rootVolume.throughputMiBps: 1000 is more than gp3 allows for iops 3000 "
        "(0.25 MiB/s per IOPS, at most 750); lower throughputMiBps or set iops to at least 4000",
    ),
    "gp3 IOPS above 500 per GiB": (
        lambda r: pool(r).update(rootVolume={"sizeGiB": 100, "iops": 60000}),
        "aidc:cluster.nodePools[0].rootVolume.iops: 60000 is more than gp3 allows for sizeGiB 100 (500 IOPS per "
        "GiB, at most 50000); lower iops or set sizeGiB to at least 120",
    ),
    "gp3 IOPS above the maximum": (
        lambda r: pool(r).update(rootVolume={"sizeGiB": 1024, "iops": 80001}),
        "aidc:cluster.nodePools[0].rootVolume.iops: 80001: Input should be less than or equal to 80000",
    ),
    "gp3 throughput above the maximum": (
        lambda r: pool(r).update(rootVolume={"iops": 16000, "throughputMiBps": 2001}),
        "aidc:cluster.nodePools[0].rootVolume.throughputMiBps: 2001: Input should be less than or equal to 2000",
    ),
    "spot with EFA": (
        lambda r: pool(r).update(capacity={"type": "spot"}),
        "aidc:cluster.nodePools[0].capacity.type: 'spot' is not allowed for an EFA pool (interruptions break "
        "collectives); use on-demand, odcr or capacity-block",
    ),
    "pool and reservation in different AZs": (
        lambda r: pool(r).update(availabilityZones=["us-east-1b"], capacity=CB),
        "aidc:cluster.nodePools[0].capacity.reservationAvailabilityZone: reservation cr-0123456789abcdef0 is in "
        "'us-east-1a' but the pool would be in ['us-east-1b']; set availabilityZones: ['us-east-1a']",
    ),
    "ODCR group turned off": (
        lambda r: pool(r).update(capacity={**ODCR, "reservationPlacementGroup": "odcr-pg"}, placementGroup=False),
        "aidc:cluster.nodePools[0].placementGroup: false contradicts capacity.reservationPlacementGroup "
        "'odcr-pg': reservation cr-0123456789abcdef0 only serves launches into that group; remove placementGroup "
        "(or set it to true)",
    ),
    "reservation placement group on a capacity block": (
        lambda r: pool(r).update(capacity={**CB, "reservationPlacementGroup": "block-pg"}),
        "aidc:cluster.nodePools[0].capacity.reservationPlacementGroup: only allowed with type 'odcr', not "
        "'capacity-block'; Capacity Blocks are not created in placement groups (AWS delivers a block "
        "co-located): remove it",
    ),
    "reservation placement group without a reservation": (
        lambda r: pool(r).update(capacity={"reservationPlacementGroup": "my-pg"}),
        "aidc:cluster.nodePools[0].capacity.reservationPlacementGroup: only allowed with type 'odcr', not "
        "'on-demand'; it names the placement group an ODCR was created in: remove it",
    ),
    "reservation placement group given as an ARN": (
        lambda r: pool(r).update(capacity={**ODCR, "reservationPlacementGroup": PG_ARN}),
        "aidc:cluster.nodePools[0].capacity.reservationPlacementGroup: "
        f"{PG_ARN!r} is an ARN; give the group's name ('odcr-pg', the part after 'placement-group/')",
    ),
    "reservation placement group with a space": (
        lambda r: pool(r).update(capacity={**ODCR, "reservationPlacementGroup": "odcr pg"}),
        "aidc:cluster.nodePools[0].capacity.reservationPlacementGroup: 'odcr pg' is not a placement group name "
        "(1-255 characters, no spaces)",
    ),
    "reservation placement group too long": (
        lambda r: pool(r).update(capacity={**ODCR, "reservationPlacementGroup": "g" * 256}),
        f"aidc:cluster.nodePools[0].capacity.reservationPlacementGroup: {'g' * 256!r} is not a placement group "
        "name (1-255 characters, no spaces)",
    ),
    "reservation outside the cluster AZs": (
        lambda r: pool(r).update(capacity={**CB, "reservationAvailabilityZone": "us-east-1c"}),
        "aidc:cluster.nodePools[0].capacity.reservationAvailabilityZone: 'us-east-1c' is not one of the "
        "cluster's availabilityZones ['us-east-1a', 'us-east-1b']",
    ),
    "reservation without its id": (
        lambda r: pool(r).update(capacity={"type": "odcr", "reservationInstanceCount": 2}),
        "aidc:cluster.nodePools[0].capacity: reservationId is required when type is 'odcr'",
    ),
    "autoscaling a training pool": (
        lambda r: pool(r).update(autoscaling={"maxSize": 4}),
        "aidc:cluster.nodePools[0].autoscaling: only allowed for role 'infer', not 'train'",
    ),
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_invalid_pool_has_one_clear_message(case):
    mutate, expected = POOL_CASES[case]
    assert error_of(mutate) == expected


# capacity -> (uses a placement group, the existing group it names): a group the stack creates must
# never stand between a pool and its reservation.
PLACEMENT_DEFAULTS = {
    "on-demand EFA": ({"type": "on-demand"}, True, None),
    "capacity block": (CB, False, None),
    "ODCR outside any group": (ODCR, True, None),  # as on-demand: a new group for an EFA pool
    "ODCR in a group": ({**ODCR, "reservationPlacementGroup": "odcr-pg"}, True, "odcr-pg"),
}


@pytest.mark.parametrize("case", sorted(PLACEMENT_DEFAULTS))
def test_placement_group_default_follows_the_capacity_type(case):
    capacity, uses, existing = PLACEMENT_DEFAULTS[case]
    p = load(lambda r: pool(r).update(capacity=capacity)).cluster.node_pools[0]
    assert p.uses_efa
    assert (p.uses_placement_group, p.existing_placement_group) == (uses, existing)


def test_explicit_placement_group_settings_that_agree_with_the_reservation_load():
    no_group = load(lambda r: pool(r).update(capacity=CB, placementGroup=False)).cluster.node_pools[0]
    assert not no_group.uses_placement_group
    # A stack deployed before Capacity Blocks lost their group keeps it (AWS cannot delete a group
    # with instances in it); CrossGuard warns, config does not refuse.
    kept = load(lambda r: pool(r).update(capacity=CB, placementGroup=True)).cluster.node_pools[0]
    assert kept.uses_placement_group and kept.existing_placement_group is None
    odcr_off = load(lambda r: pool(r).update(capacity=ODCR, placementGroup=False)).cluster.node_pools[0]
    assert not odcr_off.uses_placement_group
    odcr = {**ODCR, "reservationPlacementGroup": "odcr-pg"}
    in_group = load(lambda r: pool(r).update(capacity=odcr, placementGroup=True)).cluster.node_pools[0]
    assert in_group.existing_placement_group == "odcr-pg"
    # On-demand keeps today's behaviour: a non-EFA pool may still ask for a new group.
    asked = load(lambda r: pool(r).update(instanceType="g6.xlarge", placementGroup=True)).cluster.node_pools[0]
    assert asked.uses_placement_group and asked.existing_placement_group is None


def test_a_pool_may_use_part_of_an_odcr():
    p = load(lambda r: pool(r).update(count=2, capacity={**ODCR, "reservationInstanceCount": 4})).cluster.node_pools[0]
    assert (p.count, p.capacity.reservation_instance_count) == (2, 4)


def test_placement_group_in_one_az_loads():
    """The fixes the placement group error names: pin the Auto Scaling pool to one AZ, or no group."""
    serve = SERVE_IN_GROUP
    cfg = load(lambda r: r["cluster"]["nodePools"].append({**serve, "availabilityZones": ["us-east-1b"]}))
    pinned = cfg.cluster.node_pools[1]
    assert pinned.uses_placement_group and cfg.cluster.pool_azs(pinned) == ["us-east-1b"]
    cfg = load(lambda r: r["cluster"]["nodePools"].append({**serve, "placementGroup": False}))
    spread = cfg.cluster.node_pools[1]
    assert not spread.uses_placement_group and cfg.cluster.pool_azs(spread) == ["us-east-1a", "us-east-1b"]


# (sizeGiB, iops, throughputMiBps) at the edges gp3 allows: 500 IOPS/GiB, 0.25 MiB/s per IOPS, 80K, 2,000.
GP3_LIMITS = [(50, 25000, 2000), (160, 80000, 2000), (200, 3000, 750), (1024, 8000, 2000), (50, 3000, 125)]


@pytest.mark.parametrize(("size", "iops", "throughput"), GP3_LIMITS)
def test_gp3_root_volume_at_its_limits_loads(size, iops, throughput):
    volume = {"sizeGiB": size, "iops": iops, "throughputMiBps": throughput}
    root = load(lambda r: pool(r).update(rootVolume=volume)).cluster.node_pools[0].root_volume
    assert (root.size_gib, root.iops, root.throughput_mibps) == (size, iops, throughput)


def test_spot_is_fine_without_efa():
    cfg = load(lambda r: pool(r).update(instanceType="g6.xlarge", capacity={"type": "spot"}))
    assert not cfg.cluster.node_pools[0].uses_efa


def test_reservation_az_is_the_default_pool_az():
    cfg = load(lambda r: pool(r).update(capacity={**CB, "reservationAvailabilityZone": "us-east-1b"}))
    assert cfg.cluster.pool_azs(cfg.cluster.node_pools[0]) == ["us-east-1b"]


def test_availability_zones_must_be_in_the_stack_region():
    with pytest.raises(ConfigError) as info:
        load_stack_config(copy.deepcopy(BASE), stack="test", region="us-west-2")
    assert str(info.value) == (
        "aidc:cluster.availabilityZones: 'us-east-1a' is not in region 'us-west-2' (aws:region); "
        "zones there are named like 'us-west-2a', 'us-west-2b'"
    )


def test_numbers_given_as_strings_still_load():
    # `pulumi config set --path` stores strings: '2' must stay a valid count.
    assert load(lambda r: pool(r).update(count="2")).cluster.node_pools[0].count == 2
