"""CIDR plan for the cluster VPC (pure: no Pulumi import).

Layout of a VPC of prefix ``/p`` with ``n`` AZs: the VPC is cut into ``2**k`` equal blocks, with
``k`` the smallest number such that ``n`` private blocks plus one more block fit. Private subnets
take blocks ``0..n-1`` (one per AZ, as large as possible: every EFA NIC of a GPU node takes an IP,
a p5 uses 33 of them). The LAST block holds the small public subnets (they carry only NAT
gateways), never larger than ``/24``. Blocks in between stay free for later growth, contiguous.

Example, ``10.42.0.0/16`` and 3 AZs: private ``10.42.0.0/18``, ``10.42.64.0/18``,
``10.42.128.0/18``; public ``10.42.192.0/24``, ``10.42.193.0/24``, ``10.42.194.0/24``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: AWS rejects subnets smaller than /28.
SMALLEST_SUBNET_PREFIX = 28
#: Public subnets hold NAT gateways (one ENI each): a /24 is plenty, larger wastes VPC space.
LARGEST_PUBLIC_PREFIX = 24


@dataclass(frozen=True, kw_only=True)
class SubnetPlan:
    """The two subnets of one availability zone."""

    az: str
    public_cidr: str
    private_cidr: str


def _bits_for(count: int) -> int:
    """Smallest ``b`` with ``2**b >= count``."""
    return (count - 1).bit_length()


def plan_subnets(vpc_cidr: str, azs: list[str] | tuple[str, ...]) -> list[SubnetPlan]:
    """One public and one private subnet per AZ, in the order of ``azs``.

    Raises ``ValueError`` for an invalid CIDR, no AZs, a repeated AZ, or a VPC too small to hold
    /28 public subnets for every AZ.
    """
    vpc = ipaddress.ip_network(vpc_cidr, strict=True)
    if vpc.version != 4:
        raise ValueError(f"vpc_cidr {vpc_cidr!r}: only IPv4 VPC CIDRs are supported")
    if not azs:
        raise ValueError("azs: at least one availability zone is required")
    if len(set(azs)) != len(azs):
        raise ValueError(f"azs: {list(azs)} lists an availability zone twice")

    n = len(azs)
    private_prefix = vpc.prefixlen + _bits_for(n + 1)
    public_prefix = max(private_prefix + _bits_for(n), LARGEST_PUBLIC_PREFIX)
    if public_prefix > SMALLEST_SUBNET_PREFIX:
        raise ValueError(
            f"vpc_cidr {vpc_cidr!r} is too small for {n} AZs: public subnets would be /{public_prefix}, "
            f"AWS allows at most /{SMALLEST_SUBNET_PREFIX}"
        )
    blocks = list(vpc.subnets(new_prefix=private_prefix))
    public_pool = blocks[-1]
    publics = public_pool.subnets(new_prefix=public_prefix)
    return [SubnetPlan(az=az, public_cidr=str(next(publics)), private_cidr=str(blocks[i])) for i, az in enumerate(azs)]
