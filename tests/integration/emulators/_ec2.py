"""Turn the program's declared EC2 resources (Pulumi camelCase) into EC2 API calls on an emulator.

Only spelling changes here (camelCase -> PascalCase, tag maps -> tag lists, the launch template's
string booleans -> booleans) plus id remapping: the mock run's ids (subnet, security group, CMK,
instance profile, AMI) are replaced by ids of stand-ins created in the emulator. Neither emulator
implements placement groups, so the template's ``placement.groupName`` is dropped (and said so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Launch-template fields that the schema types as strings holding booleans.
_STRING_BOOLS = {"ebsOptimized", "encrypted", "deleteOnTermination", "associatePublicIpAddress"}
#: camelCase keys whose EC2 API name is not their PascalCase form.
_RENAMES = {"securityGroups": "Groups", "kmsKeyId": "KmsKeyId", "iops": "Iops"}
#: Keys of the Pulumi resource that are not part of LaunchTemplateData.
_NOT_TEMPLATE_DATA = {"name", "description", "tags", "updateDefaultVersion", "arn", "latestVersion", "defaultVersion"}


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_map(tags: list[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def to_api(value: Any, key: str = "", remap: Mapping[str, str] | None = None) -> Any:
    """Pulumi camelCase value -> EC2 API shape, replacing mock ids found in ``remap``."""
    remap = remap or {}
    if isinstance(value, Mapping):
        if key == "tags":
            return tag_list(value)
        return {_RENAMES.get(k, k[:1].upper() + k[1:]): to_api(v, k, remap) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [to_api(v, key, remap) for v in value]
    if isinstance(value, str):
        if key in _STRING_BOOLS:
            return value.lower() == "true"
        return remap.get(value, value)
    if isinstance(value, float):
        return _number(value)
    return value


def launch_template_data(declared: Mapping[str, Any], remap: Mapping[str, str]) -> dict[str, Any]:
    """LaunchTemplateData for ``create_launch_template`` from a declared LaunchTemplate."""
    data = {k: v for k, v in declared.items() if k not in _NOT_TEMPLATE_DATA and v is not None}
    placement = dict(data.get("placement") or {})
    placement.pop("groupName", None)  # no placement groups in either emulator
    if placement:
        data["placement"] = placement
    else:
        data.pop("placement", None)
    return to_api(data, remap=remap)


def run_instance_args(declared: Mapping[str, Any], launch_template_id: str) -> dict[str, Any]:
    """``run_instances`` kwargs for one declared Instance launched from its (emulator) template."""
    return {
        "MinCount": 1,
        "MaxCount": 1,
        "LaunchTemplate": {"LaunchTemplateId": launch_template_id, "Version": declared["launchTemplate"]["version"]},
        "MetadataOptions": to_api(declared["metadataOptions"]),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tag_list(declared["tags"])},
            {"ResourceType": "volume", "Tags": tag_list(declared["volumeTags"])},
        ],
    }
