"""The offline plan CLI (the README's main job): what it prints, its JSON, its errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra import catalog
from infra.config import load_stack_config
from infra.offline import REPO_ROOT, load_stack_yaml
from infra.plan import HOURS_PER_30_DAYS, NAT_GATEWAY_PER_HOUR, cost_lines


def plan(*args, cwd=REPO_ROOT):
    return subprocess.run(
        [sys.executable, "-m", "infra.plan", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_dev_plan_prints_resources_pools_and_cost(tmp_path):
    out = tmp_path / "plan.json"
    result = plan("--stack", "dev", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "offline plan" in result.stdout and "no cloud calls" in result.stdout
    assert "g6.xlarge" in result.stdout and "Estimated cost" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["offline"] is True and summary["stack"] == "dev"
    (pool,) = summary["nodePools"]
    assert (pool["instanceType"], pool["count"], pool["gpusPerNode"], pool["efaPerNode"]) == ("g6.xlarge", 1, 1, 0)
    node_cost = catalog.CATALOG["g6.xlarge"].usd_per_hour
    assert summary["cost"]["usdPerHour"] > node_cost
    assert summary["cost"]["usdPer30Days"] == pytest.approx(summary["cost"]["usdPerHour"] * HOURS_PER_30_DAYS, rel=1e-3)
    assert summary["resources"] > 40


def test_p5_plan_counts_efa_and_gpus(tmp_path):
    out = tmp_path / "plan.json"
    result = plan("--stack", "p5", "--json", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    (pool,) = summary["nodePools"]
    assert (pool["count"], pool["gpusPerNode"], pool["efaPerNode"], pool["capacity"]) == (2, 8, 32, "capacity-block")
    # A Capacity Block is delivered co-located: no placement group, none created.
    assert pool["placementGroup"] is None
    assert not any("PlacementGroup" in t for types in summary["components"].values() for t in types)
    assert "p5-train-pg" not in result.stdout


def test_cost_lines_sum_pools_and_fixed_charges():
    raw = load_stack_yaml("p5")
    cfg = load_stack_config({k[5:]: v for k, v in raw.items() if k.startswith("aidc:")}, stack="p5")
    lines = {line.item: line.usd_per_hour for line in cost_lines(cfg)}
    assert lines["pool train"] == pytest.approx(2 * catalog.CATALOG["p5.48xlarge"].usd_per_hour)
    assert lines["NAT gateways"] == pytest.approx(2 * NAT_GATEWAY_PER_HOUR)  # per-az, 2 AZs
    assert lines["FSx for Lustre"] > 0


def test_unknown_stack_is_a_clear_error():
    result = plan("--stack", "nope")
    assert result.returncode == 2
    assert result.stderr.startswith("error: stack 'nope': Pulumi.nope.yaml not found; known stacks:")
    assert "Traceback" not in result.stderr


def test_config_mistake_in_stack_file_is_one_line_without_traceback(tmp_path: Path):
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    text = (tmp_path / "Pulumi.dev.yaml").read_text().replace("instanceType: g6.xlarge", "instanceType: g6.xlarg")
    (tmp_path / "Pulumi.broken.yaml").write_text(text)
    result = plan("--stack", "broken", "--project-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: aidc:cluster.nodePools[0].instanceType: 'g6.xlarg' is not a known instance type; "
        "did you mean 'g6.xlarge'?"
    )


def test_json_to_stdout_is_machine_readable_only():
    result = plan("--stack", "p5", "--json", "-")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert summary["stack"] == "p5" and summary["nodePools"][0]["capacity"] == "capacity-block"
    (line,) = [c for c in summary["cost"]["lines"] if c["item"] == "pool train"]
    assert "block's price is fixed at purchase" in line["detail"], line


def test_stack_file_errors_are_one_line(tmp_path: Path):
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.yamlerr.yaml").write_text("config:\n  aidc:cluster:\n    name: dev\n   bad: [\n")
    (tmp_path / "Pulumi.word.yaml").write_text("config:\n  aws:region: us-east-1\n  aidc:cluster: dev\n")
    expected = {
        "yamlerr": "error: Pulumi.yamlerr.yaml: not valid YAML at line 4, column 4: "
        "expected <block end>, but found '<block mapping start>'",
        "word": "error: aidc:cluster: 'dev' is not a mapping of settings (give key: value pairs under it)",
    }
    for stack, message in expected.items():
        result = plan("--stack", stack, "--project-dir", str(tmp_path))
        assert (result.returncode, result.stderr.strip()) == (2, message)
