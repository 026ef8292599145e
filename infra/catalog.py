"""GPU instance catalog and the EFA network-interface layout (pure: no Pulumi import).

The authoritative source is EC2 DescribeInstanceTypes (``NetworkInfo.MaximumNetworkCards``,
``NetworkInfo.EfaInfo.MaximumEfaInterfaces``); this checked-in copy lets the program, the
policies, the launchers and the offline plan agree without a cloud call, and tests pin the EFA
counts that GPU-cluster IaC most often gets wrong.

Prices are us-east-1 Linux on-demand list prices in USD per hour, as of ``PRICE_DATE`` (after the
June 2025 P4/P5 price reduction). They feed cost estimates only; check the AWS price list before
budgeting.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

PRICE_DATE = "2025-06"
PRICE_REGION = "us-east-1"

NicKind = Literal["interface", "efa", "efa-only"]


@dataclass(frozen=True, kw_only=True)
class InstanceType:
    """One EC2 GPU instance type.

    ``gpu_memory_gib`` is per GPU. ``efa_interfaces`` is ``MaximumEfaInterfaces`` (0: no EFA).
    ``nvswitch`` marks NVSwitch systems, which need NVIDIA fabric manager.
    """

    name: str
    gpu_model: str
    gpus: int
    gpu_memory_gib: int
    vcpus: int
    memory_gib: int
    network_cards: int
    efa_interfaces: int
    nvswitch: bool
    usd_per_hour: float
    arch: str = "x86_64"

    @property
    def efa_supported(self) -> bool:
        return self.efa_interfaces > 0

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


def _it(name, gpu_model, gpus, mem, vcpus, ram, cards, efa, nvswitch, price) -> InstanceType:
    return InstanceType(
        name=name,
        gpu_model=gpu_model,
        gpus=gpus,
        gpu_memory_gib=mem,
        vcpus=vcpus,
        memory_gib=ram,
        network_cards=cards,
        efa_interfaces=efa,
        nvswitch=nvswitch,
        usd_per_hour=price,
    )


_TYPES: tuple[InstanceType, ...] = (
    # name, GPU, count, GiB/GPU, vCPU, RAM GiB, network cards, EFA, NVSwitch, $/h
    _it("p4d.24xlarge", "A100-SXM4-40GB", 8, 40, 96, 1152, 4, 4, True, 21.96),
    _it("p4de.24xlarge", "A100-SXM4-80GB", 8, 80, 96, 1152, 4, 4, True, 27.45),
    _it("p5.48xlarge", "H100-SXM5-80GB", 8, 80, 192, 2048, 32, 32, True, 55.04),
    _it("p5e.48xlarge", "H200-SXM5-141GB", 8, 141, 192, 2048, 32, 32, True, 66.80),
    _it("p5en.48xlarge", "H200-SXM5-141GB", 8, 141, 192, 2048, 16, 16, True, 63.30),
    _it("p6-b200.48xlarge", "B200-180GB", 8, 179, 192, 2048, 8, 8, True, 113.93),
    _it("g5.xlarge", "A10G", 1, 24, 4, 16, 1, 0, False, 1.006),
    _it("g5.2xlarge", "A10G", 1, 24, 8, 32, 1, 0, False, 1.212),
    _it("g5.4xlarge", "A10G", 1, 24, 16, 64, 1, 0, False, 1.624),
    _it("g5.8xlarge", "A10G", 1, 24, 32, 128, 1, 1, False, 2.448),
    _it("g5.12xlarge", "A10G", 4, 24, 48, 192, 1, 1, False, 5.672),
    _it("g5.16xlarge", "A10G", 1, 24, 64, 256, 1, 1, False, 4.096),
    _it("g5.24xlarge", "A10G", 4, 24, 96, 384, 1, 1, False, 8.144),
    _it("g5.48xlarge", "A10G", 8, 24, 192, 768, 1, 1, False, 16.288),
    _it("g6.xlarge", "L4", 1, 24, 4, 16, 1, 0, False, 0.805),
    _it("g6.2xlarge", "L4", 1, 24, 8, 32, 1, 0, False, 0.978),
    _it("g6.4xlarge", "L4", 1, 24, 16, 64, 1, 0, False, 1.323),
    _it("g6.8xlarge", "L4", 1, 24, 32, 128, 1, 1, False, 2.014),
    _it("g6.12xlarge", "L4", 4, 24, 48, 192, 1, 1, False, 4.602),
    _it("g6.16xlarge", "L4", 1, 24, 64, 256, 1, 1, False, 3.397),
    _it("g6.24xlarge", "L4", 4, 24, 96, 384, 1, 1, False, 6.675),
    _it("g6.48xlarge", "L4", 8, 24, 192, 768, 1, 1, False, 13.350),
    _it("g6e.xlarge", "L40S", 1, 48, 4, 32, 1, 0, False, 1.861),
    _it("g6e.2xlarge", "L40S", 1, 48, 8, 64, 1, 0, False, 2.242),
    _it("g6e.4xlarge", "L40S", 1, 48, 16, 128, 1, 0, False, 3.004),
    _it("g6e.8xlarge", "L40S", 1, 48, 32, 256, 1, 1, False, 4.529),
    _it("g6e.12xlarge", "L40S", 4, 48, 48, 384, 1, 1, False, 10.493),
    _it("g6e.16xlarge", "L40S", 1, 48, 64, 512, 1, 1, False, 7.577),
    _it("g6e.24xlarge", "L40S", 4, 48, 96, 768, 2, 2, False, 15.066),
    _it("g6e.48xlarge", "L40S", 8, 48, 192, 1536, 4, 4, False, 30.131),
)

CATALOG: dict[str, InstanceType] = {t.name: t for t in _TYPES}


class UnknownInstanceType(KeyError):
    """Raised for an instance type the catalog does not know; the message suggests a close match."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence.
        return str(self.args[0])


def suggest_instance_type(name: str) -> str | None:
    """The closest known instance type name, or None when nothing is close."""
    matches = difflib.get_close_matches(name, CATALOG, n=1, cutoff=0.6)
    return matches[0] if matches else None


def instance_type(name: str) -> InstanceType:
    """Look up ``name``; raise :class:`UnknownInstanceType` with a 'did you mean' hint."""
    try:
        return CATALOG[name]
    except KeyError:
        hint = suggest_instance_type(name)
        tail = f"; did you mean {hint!r}?" if hint else f"; known types: {', '.join(sorted(CATALOG))}"
        raise UnknownInstanceType(f"{name!r} is not a known instance type{tail}") from None


@dataclass(frozen=True, kw_only=True)
class NetworkInterfaceSlot:
    """One network interface of a launch template: where it sits and what it is.

    ``kind`` is the launch template ``interfaceType``: ``"interface"`` (plain ENA) or
    ``"efa-only"`` (an EFA device without an IP stack), never ``"efa"`` in the current layout.
    """

    network_card_index: int
    device_index: int
    kind: NicKind

    @property
    def efa_capable(self) -> bool:
        return self.kind in ("efa", "efa-only")

    @property
    def primary(self) -> bool:
        return self.network_card_index == 0 and self.device_index == 0


def efa_interfaces_for(instance_type_name: str) -> int:
    """``MaximumEfaInterfaces`` of an instance type (0 when it has no EFA)."""
    return instance_type(instance_type_name).efa_interfaces


def network_interface_layout(instance_type_name: str, *, efa: bool = True) -> list[NetworkInterfaceSlot]:
    """Network interfaces to declare for one instance under the current AWS EFA rules.

    Card 0 / device 0 is the primary ENA interface (it carries the IP address SSM and the OS use).
    When the type has EFA, card 0 also gets an ``efa-only`` NIC at device 1, and every further
    EFA-capable card gets an ``efa-only`` NIC at device 0, so all ``MaximumEfaInterfaces`` are used
    (p5: 1 ENA + 32 EFA-only on 32 cards). ``efa=False`` or a type without EFA yields only the
    primary interface.
    """
    spec = instance_type(instance_type_name)
    slots = [NetworkInterfaceSlot(network_card_index=0, device_index=0, kind="interface")]
    if not efa or not spec.efa_supported:
        return slots
    slots.append(NetworkInterfaceSlot(network_card_index=0, device_index=1, kind="efa-only"))
    slots.extend(
        NetworkInterfaceSlot(network_card_index=card, device_index=0, kind="efa-only")
        for card in range(1, spec.efa_interfaces)
    )
    return slots


def hourly_cost(instance_type_name: str, count: int) -> float:
    """On-demand USD per hour for ``count`` instances of a type (catalog price; see module doc)."""
    return instance_type(instance_type_name).usd_per_hour * count
