"""The pack as Pulumi sees it: importable without a server, config schema, levels, direct calls."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pulumi_policy
import pytest
from policy_stacks import efa_launch_template, good_stack
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

import policies
from policies import ALL_POLICIES, RULES, RULES_BY_NAME, PolicyConfigError, effective_config
from policies.runner import evaluate

ROOT = Path(__file__).resolve().parents[3]
POLICY_BY_NAME = {p.name: p for p in ALL_POLICIES}


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def test_import_starts_no_server_and_holds_20_policies():
    code = "import policies; print(len(policies.ALL_POLICIES))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 20  # PolicyPack would print a port and block instead
    assert all(isinstance(p, ResourceValidationPolicy | StackValidationPolicy) for p in ALL_POLICIES)
    assert len({p.name for p in ALL_POLICIES}) == len(ALL_POLICIES) == len(RULES)


def test_main_builds_the_pack_named_aidc_policies(monkeypatch):
    built = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    monkeypatch.setattr(sys, "path", list(sys.path))
    runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="__main__")
    assert built["name"] == "aidc-policies"
    assert [p.name for p in built["policies"]] == [p.name for p in ALL_POLICIES]


def test_pulumi_policy_yaml_declares_the_python_runtime():
    text = (ROOT / "policies" / "PulumiPolicy.yaml").read_text()
    assert re.search(r"^runtime:\s*\n\s+name: python", text, re.M) and "description:" in text


def test_policy_levels_and_schemas_reach_the_policy_objects():
    for rule in RULES:
        policy = POLICY_BY_NAME[rule.name]
        assert policy.enforcement_level == EnforcementLevel(rule.level)
        assert (policy.config_schema is None) == (not rule.config)
        if rule.config:
            assert all("default" in spec for spec in policy.config_schema.properties.values())


def test_resource_policy_called_directly_with_engine_args():
    policy = POLICY_BY_NAME["ec2-imdsv2-required"]
    props = efa_launch_template()["props"]
    props["metadataOptions"]["httpTokens"] = "optional"
    reported = []
    args = ResourceValidationArgs("aws:ec2/launchTemplate:LaunchTemplate", unknown_checking_proxy(props),
                                  "urn:pulumi:dev::aidc::aws:ec2/launchTemplate:LaunchTemplate::lt", "lt",
                                  _opts(), None)
    policy.validate(args, lambda message, urn=None: reported.append(message))
    assert len(reported) == 1 and "httpTokens" in reported[0]
    # A resource type the rule does not cover is ignored.
    reported.clear()
    policy.validate(ResourceValidationArgs("aws:s3/bucket:Bucket", {}, "urn:x", "b", _opts(), None),
                    lambda message, urn=None: reported.append(message))
    assert reported == []


def test_unknown_value_in_preview_is_left_to_the_engine():
    props = {"metadataOptions": {"httpTokens": UNKNOWN_STRING_VALUE}}
    args = ResourceValidationArgs("aws:ec2/launchTemplate:LaunchTemplate", unknown_checking_proxy(props),
                                  "urn:x", "lt", _opts(), None)
    with pytest.raises(UnknownValueError):  # the engine turns this into "can't run during preview"
        POLICY_BY_NAME["ec2-imdsv2-required"].validate(args, lambda *a: None)
    recorded = [{"type": "aws:ec2/launchTemplate:LaunchTemplate", "name": "lt", "props": props}]
    assert "ec2-imdsv2-required" not in {v.rule for v in evaluate(recorded)}


def test_stack_policy_called_directly_reports_the_resource_urn():
    vpc = PolicyResource("aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16"}, "urn:vpc", "vpc", _opts(), None, None,
                         [], {})
    reported = []
    POLICY_BY_NAME["vpc-flow-logs"].validate(StackValidationArgs([vpc]),
                                             lambda message, urn=None: reported.append(urn))
    assert reported == ["urn:vpc"]
    flow = PolicyResource("aws:ec2/flowLog:FlowLog", {"vpcId": UNKNOWN_STRING_VALUE, "trafficType": "ALL"},
                          "urn:flow", "flow", _opts(), None, None, [vpc], {"vpcId": [vpc]})
    reported.clear()
    POLICY_BY_NAME["vpc-flow-logs"].validate(StackValidationArgs([vpc, flow]),
                                             lambda message, urn=None: reported.append(urn))
    assert reported == []


def test_allowlist_config_changes_the_verdict():
    lt = [efa_launch_template()]
    assert "instance-type-allowlist" not in {v.rule for v in evaluate(lt)}
    config = {"instance-type-allowlist": {"allowedInstanceTypes": ["p4d.*"]}}
    assert {v.rule for v in evaluate(lt, config)} >= {"instance-type-allowlist"}


def test_enforcement_levels_are_configurable():
    stack = good_stack()
    stack[0]["props"]["enableKeyRotation"] = False
    assert [v.level for v in evaluate(stack)] == ["mandatory"]
    assert [v.level for v in evaluate(stack, {"kms-key-rotation": "advisory"})] == ["advisory"]
    assert evaluate(stack, {"kms-key-rotation": {"enforcementLevel": "disabled"}}) == []
    assert [v.level for v in evaluate(stack, {"all": "advisory"})] == ["advisory"]
    with pytest.raises(ValueError, match="'kms-key-rotation'.*'warn'"):
        evaluate(stack, {"kms-key-rotation": "warn"})


@pytest.mark.parametrize(("given", "message"), [
    ({"allowedInstanceTypes": "p5.48xlarge"}, "'allowedInstanceTypes' must be a list of strings, got 'p5.48xlarge'"),
    ({"allowedTypes": ["p5.*"]}, "unknown config key 'allowedTypes'; allowed keys: allowedInstanceTypes"),
])
def test_bad_config_names_the_key_value_and_what_is_allowed(given, message):
    with pytest.raises(PolicyConfigError, match=re.escape(message)):
        effective_config(RULES_BY_NAME["instance-type-allowlist"], given)


def test_bad_config_type_for_boolean_and_integer_list():
    with pytest.raises(PolicyConfigError, match="'allowScratch' must be a boolean"):
        effective_config(RULES_BY_NAME["fsx-lustre-cmk"], {"allowScratch": "yes"})
    with pytest.raises(PolicyConfigError, match="'allowedPublicPorts' must be a list of integers"):
        effective_config(RULES_BY_NAME["sg-no-world-ingress"], {"allowedPublicPorts": [True]})
    assert effective_config(RULES_BY_NAME["sg-no-world-ingress"], {"allowedPublicPorts": [443]}) == {
        "allowedPublicPorts": [443]}


def test_provider_default_tags_satisfy_required_tags():
    vpc = [{"type": "aws:ec2/vpc:Vpc", "name": "vpc", "props": {"cidrBlock": "10.0.0.0/16"}}]
    assert {v.rule for v in evaluate(vpc)} == {"required-tags", "vpc-flow-logs"}
    tagged = evaluate(vpc, default_tags={"aidc:stack": "dev", "aidc:cluster": "c1"})
    assert {v.rule for v in tagged} == {"vpc-flow-logs"}


def test_readme_table_lists_every_rule_with_its_control_and_level():
    rows = {}
    for line in (ROOT / "policies" / "README.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in RULES_BY_NAME:
            rows[cells[0]] = cells
    assert set(rows) == set(RULES_BY_NAME)
    for name, cells in rows.items():
        rule = RULES_BY_NAME[name]
        assert cells[1] == rule.control and cells[2].lower() == rule.level, name


def test_package_exports():
    assert policies.ALL_POLICIES is ALL_POLICIES and policies.RULES is RULES
