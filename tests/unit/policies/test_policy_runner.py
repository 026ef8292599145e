"""policies.runner.evaluate: the entry point for mock runs of the example stacks."""

from __future__ import annotations

from policy_stacks import TAGS, res

from policies.runner import Violation, evaluate


def test_violation_fields_and_synthesized_urn():
    found = evaluate([res("aws:kms/key:Key", "key", {"tags": TAGS})])
    assert found == [Violation(
        rule="kms-key-rotation", level="mandatory", resource_name="key",
        message="KMS Key enableKeyRotation is not true: set enable_key_rotation=True.",
        urn="urn:pulumi:test::aidc::aws:kms/key:Key::key", control="FSBP KMS.4")]


def test_given_urns_ids_and_dependencies_by_name_are_honoured():
    vpc = res("aws:ec2/vpc:Vpc", "vpc", {"tags": TAGS}, urn="urn:pulumi:p5::aidc::aws:ec2/vpc:Vpc::vpc")
    by_id = res("aws:ec2/flowLog:FlowLog", "flow", {"vpcId": "vpc-9", "trafficType": "ALL", "tags": TAGS})
    assert [v.urn for v in evaluate([vpc, by_id])] == ["urn:pulumi:p5::aidc::aws:ec2/vpc:Vpc::vpc"]
    assert evaluate([{**vpc, "id": "vpc-9"}, by_id]) == []  # id given beside props
    by_dep = res("aws:ec2/flowLog:FlowLog", "flow", {"trafficType": "ALL", "tags": TAGS},
                 propertyDependencies={"vpcId": ["vpc"]})
    assert evaluate([vpc, by_dep]) == []


def test_input_resources_are_not_modified():
    key = res("aws:kms/key:Key", "key", {"enableKeyRotation": True, "tags": TAGS}, "key-1")
    evaluate([key])
    assert key == res("aws:kms/key:Key", "key", {"enableKeyRotation": True, "tags": TAGS}, "key-1")
