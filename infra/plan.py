"""Offline plan: what ``pulumi up`` would create for a stack, and what it would cost.

    python -m infra.plan --stack dev [--json plan.json]

Runs the real program under Pulumi's mock runtime (see ``infra.offline``): no cloud call, no
credentials, no diff against deployed state. Costs are on-demand list-price estimates from the
catalog plus the main fixed charges (NAT gateways, interface endpoints, FSx); taxes, data
transfer, storage use and Capacity Block prices are not included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infra import catalog
from infra.config import ConfigError, StackConfig, load_stack_config
from infra.offline import REPO_ROOT, OfflineRun, run_stack

HOURS_PER_30_DAYS = 24 * 30
#: us-east-1 list prices (USD), same date as the catalog.
NAT_GATEWAY_PER_HOUR = 0.045
INTERFACE_ENDPOINT_PER_AZ_HOUR = 0.01
#: FSx for Lustre PERSISTENT_2 USD per GB-month by throughput tier (MB/s/TiB).
FSX_PERSISTENT_2_GB_MONTH = {125: 0.145, 250: 0.210, 500: 0.340, 1000: 0.600}


@dataclass(frozen=True)
class CostLine:
    item: str
    detail: str
    usd_per_hour: float

    @property
    def usd_per_30_days(self) -> float:
        return self.usd_per_hour * HOURS_PER_30_DAYS


#: Capacity the on-demand list price does not describe: say so next to the number.
_PRICE_NOTE = {
    "capacity-block": " at on-demand price; the block's price is fixed at purchase",
    "spot": " at on-demand price; spot is usually lower",
}


def cost_lines(cfg: StackConfig) -> list[CostLine]:
    """Hourly cost estimate of a stack (see module docstring for what is left out)."""
    lines = []
    for pool in cfg.cluster.node_pools:
        spec = catalog.instance_type(pool.instance_type)
        lines.append(
            CostLine(
                f"pool {pool.name}",
                f"{pool.count} x {pool.instance_type} ({pool.capacity.type})" + _PRICE_NOTE.get(pool.capacity.type, ""),
                spec.usd_per_hour * pool.count,
            )
        )
    azs = len(cfg.cluster.availability_zones)
    nats = azs if cfg.cluster.nat_mode == "per-az" else 1
    lines.append(CostLine("NAT gateways", f"{nats} x ${NAT_GATEWAY_PER_HOUR}/h", nats * NAT_GATEWAY_PER_HOUR))
    if cfg.cluster.ssm_endpoints:
        lines.append(CostLine("SSM endpoints", f"3 endpoints x {azs} AZs", 3 * azs * INTERFACE_ENDPOINT_PER_AZ_HOUR))
    fsx = cfg.storage.fsx
    if fsx.enabled:
        per_gb_month = FSX_PERSISTENT_2_GB_MONTH.get(fsx.per_unit_storage_throughput, 0.21)
        lines.append(
            CostLine(
                "FSx for Lustre",
                f"{fsx.storage_capacity_gib} GiB {fsx.deployment_type} @ {fsx.per_unit_storage_throughput} MB/s/TiB",
                fsx.storage_capacity_gib * per_gb_month / HOURS_PER_30_DAYS,
            )
        )
    return lines


def _component_of(run: OfflineRun, resource) -> str:
    by_urn = {r.urn: r for r in run.resources}
    parent = by_urn.get(resource.parent or "")
    while parent is not None and parent.parent in by_urn:
        parent = by_urn[parent.parent]
    return f"{parent.type.split(':')[-1]} {parent.name}" if parent else "stack"


def summarize(run: OfflineRun, cfg: StackConfig) -> dict:
    """A JSON-able summary: resources per component, node pools and costs."""
    per_component: dict[str, Counter] = defaultdict(Counter)
    for r in run.resources:
        if r.custom:
            per_component[_component_of(run, r)][r.type] += 1
    pools = []
    for pool in cfg.cluster.node_pools:
        info = run.outputs["nodePools"][pool.name]
        pools.append(
            {
                "name": pool.name,
                "role": pool.role,
                "instanceType": pool.instance_type,
                "count": pool.count,
                "gpusPerNode": info["gpusPerNode"],
                "gpuModel": catalog.instance_type(pool.instance_type).gpu_model,
                "efaPerNode": info["efaPerNode"],
                "placementGroup": info["placementGroup"],
                "capacity": pool.capacity.type,
                "availabilityZones": cfg.cluster.pool_azs(pool),
                "autoscaling": pool.autoscaling.model_dump(by_alias=True) if pool.autoscaling else None,
            }
        )
    costs = cost_lines(cfg)
    return {
        "stack": run.stack,
        "offline": True,
        "resources": sum(1 for r in run.resources if r.custom),
        "components": {c: dict(sorted(t.items())) for c, t in sorted(per_component.items())},
        "nodePools": pools,
        "cost": {
            "lines": [{"item": c.item, "detail": c.detail, "usdPerHour": round(c.usd_per_hour, 3)} for c in costs],
            "usdPerHour": round(sum(c.usd_per_hour for c in costs), 2),
            "usdPer30Days": round(sum(c.usd_per_30_days for c in costs), 2),
            "priceDate": catalog.PRICE_DATE,
            "priceRegion": catalog.PRICE_REGION,
        },
    }


def render(summary: dict, console: Console) -> None:
    console.print(
        f"[bold]aidc offline plan — stack {summary['stack']}[/bold]  "
        "(Pulumi mock runtime: no cloud calls, no diff against deployed state)"
    )
    res = Table(title=f"Resources pulumi up would create: {summary['resources']}")
    res.add_column("component")
    res.add_column("resource type")
    res.add_column("count", justify="right")
    for component, types in summary["components"].items():
        for i, (token, n) in enumerate(types.items()):
            res.add_row(component if i == 0 else "", token, str(n))
    console.print(res)
    pools = Table(title="Node pools")
    for col in ("pool", "role", "type", "nodes", "GPUs/node", "GPU", "EFA/node", "placement", "capacity", "AZs"):
        pools.add_column(col)
    for p in summary["nodePools"]:
        nodes = str(p["count"]) + (
            f" ({p['autoscaling']['minSize']}..{p['autoscaling']['maxSize']})" if p["autoscaling"] else ""
        )
        pools.add_row(
            p["name"], p["role"], p["instanceType"], nodes, str(p["gpusPerNode"]), p["gpuModel"],
            str(p["efaPerNode"]), p["placementGroup"] or "-", p["capacity"], ",".join(p["availabilityZones"]),
        )  # fmt: skip
    console.print(pools)
    cost = summary["cost"]
    table = Table(title=f"Estimated cost (on-demand list prices, {cost['priceRegion']}, {cost['priceDate']})")
    for col in ("item", "detail", "$/hour", "$/30 days"):
        table.add_column(col, justify="right" if col.startswith("$") else "left")
    for line in cost["lines"]:
        per_hour = line["usdPerHour"]
        table.add_row(line["item"], line["detail"], f"{per_hour:,.2f}", f"{per_hour * HOURS_PER_30_DAYS:,.0f}")
    table.add_row("[bold]total", "", f"[bold]{cost['usdPerHour']:,.2f}", f"[bold]{cost['usdPer30Days']:,.0f}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aidc-plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--json", metavar="FILE", help="also write the summary as JSON to FILE ('-': stdout only)")
    parser.add_argument(
        "--project-dir", type=Path, default=REPO_ROOT, help="folder holding Pulumi.<stack>.yaml (default: this repo)"
    )
    args = parser.parse_args(argv)
    console = Console(width=140)
    try:
        run = run_stack(args.stack, project_dir=args.project_dir)
        cfg = load_stack_config(
            {k.split(":", 1)[1]: v for k, v in run.config.items() if k.startswith("aidc:")},
            stack=args.stack,
            region=str(run.config.get("aws:region") or "us-east-1"),
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(run, cfg)
    if args.json == "-":  # machine-readable only, so it can be piped (jq, CI)
        try:
            print(json.dumps(summary, indent=2), flush=True)
        except BrokenPipeError:  # `| head`: the reader left; not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    render(summary, console)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
