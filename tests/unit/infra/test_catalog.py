"""Catalog facts and the EFA NIC layout, pinned against FACTS.md / DescribeInstanceTypes."""

import pytest

from infra import catalog
from infra.catalog import network_interface_layout

# MaximumEfaInterfaces per type (FACTS.md: SkyPilot examples/aws_efa, awsome-distributed-training).
EXPECTED_EFA = {
    "p4d.24xlarge": 4,
    "p4de.24xlarge": 4,
    "p5.48xlarge": 32,
    "p5e.48xlarge": 32,
    "p5en.48xlarge": 16,
    "p6-b200.48xlarge": 8,
    "g6e.24xlarge": 2,
    "g6e.48xlarge": 4,
    "g5.8xlarge": 1,
    "g5.48xlarge": 1,
    "g6.8xlarge": 1,
    "g6.48xlarge": 1,
    "g5.xlarge": 0,
    "g6.4xlarge": 0,
}


@pytest.mark.parametrize(("name", "efa"), sorted(EXPECTED_EFA.items()))
def test_efa_counts_match_facts(name, efa):
    assert catalog.efa_interfaces_for(name) == efa


def test_catalog_covers_required_families():
    for name in ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge", "p6-b200.48xlarge"):
        assert name in catalog.CATALOG
    for family in ("g5", "g6", "g6e"):
        sizes = {t.name.split(".")[1] for t in catalog.CATALOG.values() if t.family == family}
        assert {"xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"} <= sizes


def test_every_entry_is_consistent():
    for spec in catalog.CATALOG.values():
        assert spec.gpus in (1, 4, 8) and spec.gpu_memory_gib > 0 and spec.usd_per_hour > 0
        # Each EFA interface needs its own network card except card 0's efa-only at device 1.
        assert spec.efa_interfaces <= spec.network_cards or spec.network_cards == 1
        assert spec.nvswitch == spec.family.startswith("p")


def test_unknown_type_suggests_the_close_one():
    with pytest.raises(catalog.UnknownInstanceType, match=r"did you mean 'p5\.48xlarge'\?"):
        catalog.instance_type("p5.48xlarg")


def _layout(name, **kw):
    return [(s.network_card_index, s.device_index, s.kind) for s in network_interface_layout(name, **kw)]


def test_layout_p4d_current_rules():
    assert _layout("p4d.24xlarge") == [
        (0, 0, "interface"),
        (0, 1, "efa-only"),
        (1, 0, "efa-only"),
        (2, 0, "efa-only"),
        (3, 0, "efa-only"),
    ]


def test_layout_p5_uses_all_32_efa_cards():
    layout = _layout("p5.48xlarge")
    assert layout[0] == (0, 0, "interface")
    assert layout[1] == (0, 1, "efa-only")
    assert layout[2:] == [(card, 0, "efa-only") for card in range(1, 32)]
    assert sum(kind == "efa-only" for _, _, kind in layout) == 32
    # Exactly one primary, never an efa-only one; every card used once except card 0.
    assert [(c, d) for c, d, _ in layout].count((0, 0)) == 1
    assert sorted({c for c, _, _ in layout}) == list(range(32))


def test_layout_g6e_48xlarge_and_g5_48xlarge():
    assert _layout("g6e.48xlarge") == [(0, 0, "interface"), (0, 1, "efa-only"), (1, 0, "efa-only"),
                                       (2, 0, "efa-only"), (3, 0, "efa-only")]  # fmt: skip
    assert _layout("g5.48xlarge") == [(0, 0, "interface"), (0, 1, "efa-only")]


def test_layout_without_efa():
    assert _layout("g5.xlarge") == [(0, 0, "interface")]
    assert _layout("p5.48xlarge", efa=False) == [(0, 0, "interface")]


def test_hourly_cost():
    assert catalog.hourly_cost("p5.48xlarge", 2) == pytest.approx(2 * catalog.CATALOG["p5.48xlarge"].usd_per_hour)
