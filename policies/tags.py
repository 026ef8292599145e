"""Required tags (ADVISORY): the Ansible inventory and cost reports group resources by them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.tags import REQUIRED_TAG_KEYS

from ._model import ADVISORY, Rule, as_list, get, short

#: Taggable resource types this rule checks (the ones a GPU-cluster stack declares).
TAGGABLE = (
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate", "aws:ebs/volume:Volume",
    "aws:ec2/placementGroup:PlacementGroup", "aws:ec2/flowLog:FlowLog", "aws:ec2/natGateway:NatGateway",
    "aws:ec2/internetGateway:InternetGateway", "aws:ec2/routeTable:RouteTable", "aws:ec2/eip:Eip",
    "aws:ec2/capacityReservation:CapacityReservation", "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2",
    "aws:kms/key:Key", "aws:iam/role:Role", "aws:iam/policy:Policy", "aws:cloudtrail/trail:Trail",
    "aws:cloudwatch/logGroup:LogGroup", "aws:fsx/lustreFileSystem:LustreFileSystem",
    "aws:efs/fileSystem:FileSystem", "aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup",
    "aws:autoscaling/group:Group",
)
ASG = "aws:autoscaling/group:Group"


def _tags(resource_type: str, props: Mapping[str, Any]) -> dict[str, Any]:
    if resource_type == ASG:  # list of {key, value, propagateAtLaunch}
        return {get(t, "key"): get(t, "value") for t in as_list(get(props, "tags"))}
    merged: dict[str, Any] = {}
    for key in ("tagsAll", "tags"):
        value = get(props, key)
        if isinstance(value, Mapping):
            merged.update(value)
    return merged


def required_tags_violations(
    resource_type: str, props: Mapping[str, Any], config: Mapping | None = None,
    default_tags: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every taggable resource carries the required tag keys with non-empty values.

    ``default_tags`` are the provider's ``defaultTags.tags``, which AWS applies on top of ``tags``.
    """
    required = list((config or {}).get("requiredTags", REQUIRED_TAG_KEYS))
    tags = {**dict(default_tags or {}), **_tags(resource_type, props)}
    missing = [k for k in required if not tags.get(k)]
    if not missing:
        return []
    return [f"{short(resource_type)} lacks tag(s) {', '.join(missing)}: tag it (infra.tags.base_tags) or "
            "set them as provider default_tags."]


RULES = [
    Rule(name="required-tags", control="Tagging (aidc inventory/cost contract)", level=ADVISORY,
         description="Taggable resources carry the aidc:stack and aidc:cluster tags.",
         remediation="tags=infra.tags.base_tags(stack, cluster) or aws.Provider(default_tags=...)",
         validator=required_tags_violations, resource_types=TAGGABLE, wants_provider_tags=True,
         config={"requiredTags": {"type": "array", "items": {"type": "string"},
                                  "default": list(REQUIRED_TAG_KEYS),
                                  "description": "Tag keys every taggable resource must carry."}}),
]
