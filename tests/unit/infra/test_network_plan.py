"""The VPC CIDR plan: properties over every VPC size and AZ count the config allows."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.network_plan import LARGEST_PUBLIC_PREFIX, SMALLEST_SUBNET_PREFIX, SubnetPlan, plan_subnets

PRIVATE_RANGES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


@st.composite
def vpcs(draw) -> str:
    """Any private /16../22 network, aligned as AWS (and the config validator) require."""
    prefix = draw(st.integers(min_value=16, max_value=22))
    base = draw(st.sampled_from(PRIVATE_RANGES))
    index = draw(st.integers(min_value=0, max_value=2 ** (prefix - base.prefixlen) - 1))
    net = ipaddress.ip_network((int(base.network_address) + index * 2 ** (32 - prefix), prefix))
    return str(net)


azs = st.integers(min_value=2, max_value=6).map(lambda n: [f"us-west-2{c}" for c in "abcdef"[:n]])


@settings(max_examples=300, deadline=None)
@given(vpc_cidr=vpcs(), zones=azs)
def test_plan_properties(vpc_cidr: str, zones: list[str]) -> None:
    plan = plan_subnets(vpc_cidr, zones)
    vpc = ipaddress.ip_network(vpc_cidr)

    assert [p.az for p in plan] == zones, "one plan per AZ, in the given order"
    subnets = [ipaddress.ip_network(c) for p in plan for c in (p.public_cidr, p.private_cidr)]
    assert len(subnets) == 2 * len(zones)
    for net in subnets:
        assert net.subnet_of(vpc), f"{net} is outside {vpc}"
        assert net.prefixlen <= SMALLEST_SUBNET_PREFIX, f"{net} is smaller than AWS allows"
    for a, b in itertools.combinations(subnets, 2):
        assert not a.overlaps(b), f"{a} overlaps {b}"
    for p in plan:
        public, private = ipaddress.ip_network(p.public_cidr), ipaddress.ip_network(p.private_cidr)
        assert private.num_addresses > public.num_addresses, "private subnets hold the GPU nodes"
        assert public.prefixlen >= LARGEST_PUBLIC_PREFIX, "public subnets only carry NAT gateways"


@settings(max_examples=100, deadline=None)
@given(vpc_cidr=vpcs(), zones=azs)
def test_private_subnets_take_at_least_an_eighth_each(vpc_cidr: str, zones: list[str]) -> None:
    """Large private subnets: with up to 6 AZs each gets >= 1/8 of the VPC (p5 nodes use 33 IPs)."""
    vpc = ipaddress.ip_network(vpc_cidr)
    for p in plan_subnets(vpc_cidr, zones):
        assert ipaddress.ip_network(p.private_cidr).prefixlen <= vpc.prefixlen + 3


def test_known_plan_for_the_default_vpc() -> None:
    assert plan_subnets("10.42.0.0/16", ["us-east-1a", "us-east-1b", "us-east-1c"]) == [
        SubnetPlan(az="us-east-1a", public_cidr="10.42.192.0/24", private_cidr="10.42.0.0/18"),
        SubnetPlan(az="us-east-1b", public_cidr="10.42.193.0/24", private_cidr="10.42.64.0/18"),
        SubnetPlan(az="us-east-1c", public_cidr="10.42.194.0/24", private_cidr="10.42.128.0/18"),
    ]


def test_smallest_vpc_with_most_azs_still_fits() -> None:
    plan = plan_subnets("10.0.0.0/22", [f"eu-west-1{c}" for c in "abcdef"])
    assert {ipaddress.ip_network(p.public_cidr).prefixlen for p in plan} == {28}
    assert {ipaddress.ip_network(p.private_cidr).prefixlen for p in plan} == {25}


@pytest.mark.parametrize(
    ("vpc_cidr", "zones", "message"),
    [
        ("10.0.0.0/24", list("abcdefg"), "too small for 7 AZs"),
        ("10.0.0.0/16", [], "at least one availability zone"),
        ("10.0.0.0/16", ["a", "a"], "lists an availability zone twice"),
        ("fd00::/56", ["a", "b"], "only IPv4"),
    ],
)
def test_bad_input_is_rejected(vpc_cidr: str, zones: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_subnets(vpc_cidr, zones)


def test_misaligned_cidr_is_rejected() -> None:
    with pytest.raises(ValueError, match="has host bits set"):
        plan_subnets("10.0.0.1/16", ["a", "b"])
