"""Live AWS resources (boto3 describe results) -> the camelCase property dicts Pulumi inputs use.

Each adapter returns resources in the shape ``policies.runner.evaluate`` takes
(``{"type", "name", "id", "props"}``), so the post-deploy audit judges live resources with the very
validators the CrossGuard pack runs before deploy. Only spelling is translated here; no rule logic.
Resources are found by the ``aidc:stack`` tag; ``stack=None`` takes every resource in the region
(the audit's ``--all-resources``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from infra.tags import TAG_STACK

Resource = dict[str, Any]

INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE_CONFIG = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
KEY = "aws:kms/key:Key"
TRAIL = "aws:cloudtrail/trail:Trail"
LUSTRE = "aws:fsx/lustreFileSystem:LustreFileSystem"

_LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def _res(type_: str, rid: str, props: Mapping[str, Any]) -> Resource:
    return {"type": type_, "name": rid, "id": rid, "props": dict(props)}


def _tags(items: Iterable[Mapping[str, Any]] | None, key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {t[key]: t[value] for t in items or []}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _tag_filter(stack: str | None) -> list[dict[str, Any]]:
    return [] if stack is None else [{"Name": f"tag:{TAG_STACK}", "Values": [stack]}]


def _ours(tags: Mapping[str, str], stack: str | None) -> bool:
    """Whether a resource belongs to the audited stack (every resource when stack is None)."""
    return stack is None or tags.get(TAG_STACK) == stack


# ----------------------------------------------------------------------------------------- EC2


def _volume_props(vol: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
    props = {"encrypted": bool(vol.get("Encrypted")), "kmsKeyId": vol.get("KmsKeyId"), "type": vol.get("VolumeType")}
    if device:
        props["deviceName"] = device
    return props


def ec2_resources(ec2: Any, stack: str | None) -> list[Resource]:
    """Instances (root/extra EBS devices folded in), standalone volumes, launch templates, SGs."""
    out: list[Resource] = []
    filters = _tag_filter(stack)
    instances = [
        i
        for page in ec2.get_paginator("describe_instances").paginate(
            Filters=filters + [{"Name": "instance-state-name", "Values": _LIVE_STATES}]
        )
        for r in page["Reservations"]
        for i in r["Instances"]
    ]
    attached = [m["Ebs"]["VolumeId"] for i in instances for m in i.get("BlockDeviceMappings", []) if "Ebs" in m]
    volumes = {v["VolumeId"]: v for v in ec2.describe_volumes(VolumeIds=attached)["Volumes"]} if attached else {}
    for inst in instances:
        out.append(_res(INSTANCE, inst["InstanceId"], _instance_props(inst, volumes)))
    for page in ec2.get_paginator("describe_volumes").paginate(Filters=filters):
        for vol in page["Volumes"]:
            if vol["VolumeId"] not in volumes:  # attached ones are judged with their instance
                out.append(_res(VOLUME, vol["VolumeId"], {**_volume_props(vol), "tags": _tags(vol.get("Tags"))}))
    out += _launch_templates(ec2, filters)
    for page in ec2.get_paginator("describe_security_groups").paginate(Filters=filters):
        for sg in page["SecurityGroups"]:
            out.append(_res(SECURITY_GROUP, sg["GroupId"], _security_group_props(sg)))
    return out


def _instance_props(inst: Mapping[str, Any], volumes: Mapping[str, Any]) -> dict[str, Any]:
    md = inst.get("MetadataOptions", {})
    root_name = inst.get("RootDeviceName")
    root, extra = None, []
    for mapping in inst.get("BlockDeviceMappings", []):
        vol = volumes.get(mapping.get("Ebs", {}).get("VolumeId", ""))
        if vol is None:
            continue
        if mapping["DeviceName"] == root_name:
            root = _volume_props(vol)
        else:
            extra.append(_volume_props(vol, mapping["DeviceName"]))
    return {
        "instanceType": inst.get("InstanceType"),
        "metadataOptions": {
            "httpTokens": md.get("HttpTokens"),
            "httpEndpoint": md.get("HttpEndpoint"),
            "httpPutResponseHopLimit": md.get("HttpPutResponseHopLimit"),
        },
        "rootBlockDevice": root,
        "ebsBlockDevices": extra,
        "tags": _tags(inst.get("Tags")),
    }


def _launch_templates(ec2: Any, filters: list[dict[str, Any]]) -> list[Resource]:
    out = []
    for page in ec2.get_paginator("describe_launch_templates").paginate(Filters=filters):
        for lt in page["LaunchTemplates"]:
            (version,) = ec2.describe_launch_template_versions(
                LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Latest"]
            )["LaunchTemplateVersions"]
            data = version["LaunchTemplateData"]
            md = data.get("MetadataOptions", {})
            out.append(_res(LAUNCH_TEMPLATE, lt["LaunchTemplateId"], {
                "name": lt.get("LaunchTemplateName"),
                "instanceType": data.get("InstanceType"),
                "metadataOptions": {"httpTokens": md.get("HttpTokens"), "httpEndpoint": md.get("HttpEndpoint")},
                "blockDeviceMappings": [
                    {"deviceName": m.get("DeviceName"),
                     "ebs": {"encrypted": m["Ebs"].get("Encrypted"), "kmsKeyId": m["Ebs"].get("KmsKeyId")}}
                    for m in data.get("BlockDeviceMappings", []) if "Ebs" in m
                ],
                "tags": _tags(lt.get("Tags")),
            }))
    return out


def _permission(perm: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "protocol": perm.get("IpProtocol"),
        "fromPort": perm.get("FromPort"),
        "toPort": perm.get("ToPort"),
        "cidrBlocks": [r["CidrIp"] for r in perm.get("IpRanges", [])],
        "ipv6CidrBlocks": [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])],
        "securityGroups": [g["GroupId"] for g in perm.get("UserIdGroupPairs", [])],
    }


def _security_group_props(sg: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": sg.get("GroupName"),
        "vpcId": sg.get("VpcId"),
        "ingress": [_permission(p) for p in sg.get("IpPermissions", [])],
        "egress": [_permission(p) for p in sg.get("IpPermissionsEgress", [])],
        "tags": _tags(sg.get("Tags")),
    }


# ------------------------------------------------------------------------------------------ S3


def _optional(call: Callable[[], Any], *missing_codes: str) -> Any:
    """The call's result, or None when S3 answers that the configuration does not exist."""
    try:
        return call()
    except ClientError as exc:
        if _error_code(exc) in missing_codes:
            return None
        raise


def _bucket_tags(s3: Any, bucket: str) -> dict[str, str]:
    reply = _optional(lambda: s3.get_bucket_tagging(Bucket=bucket), "NoSuchTagSet", "NoSuchBucket")
    return _tags(reply.get("TagSet")) if reply else {}


def s3_resources(s3: Any, stack: str | None) -> list[Resource]:
    """Each stack bucket plus its public access block, default encryption, versioning and policy."""
    out: list[Resource] = []
    for bucket in (b["Name"] for b in s3.list_buckets().get("Buckets", [])):
        tags = _bucket_tags(s3, bucket)
        if not _ours(tags, stack):
            continue
        out.append(_res(BUCKET, bucket, {"bucket": bucket, "tags": tags}))
        pab = _optional(lambda b=bucket: s3.get_public_access_block(Bucket=b), "NoSuchPublicAccessBlockConfiguration")
        if pab:
            flags = pab["PublicAccessBlockConfiguration"]
            out.append(_res(PUBLIC_ACCESS_BLOCK, f"{bucket}/public-access-block", {
                "bucket": bucket, **{k[:1].lower() + k[1:]: v for k, v in flags.items()}
            }))
        sse = _optional(lambda b=bucket: s3.get_bucket_encryption(Bucket=b),
                        "ServerSideEncryptionConfigurationNotFoundError")
        if sse:
            rules = [
                {"applyServerSideEncryptionByDefault": {
                    "sseAlgorithm": r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm"),
                    "kmsMasterKeyId": r.get("ApplyServerSideEncryptionByDefault", {}).get("KMSMasterKeyID")},
                 "bucketKeyEnabled": r.get("BucketKeyEnabled")}
                for r in sse["ServerSideEncryptionConfiguration"].get("Rules", [])
            ]
            out.append(_res(SSE_CONFIG, f"{bucket}/encryption", {"bucket": bucket, "rules": rules}))
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
        out.append(_res(VERSIONING, f"{bucket}/versioning",
                        {"bucket": bucket, "versioningConfiguration": {"status": status}}))
        policy = _optional(lambda b=bucket: s3.get_bucket_policy(Bucket=b), "NoSuchBucketPolicy")
        if policy:
            out.append(_res(BUCKET_POLICY, f"{bucket}/policy", {"bucket": bucket, "policy": policy["Policy"]}))
    return out


# ------------------------------------------------------------------------------ KMS, CloudTrail


def kms_resources(kms: Any, stack: str | None) -> list[Resource]:
    """Customer managed keys tagged with the stack (AWS managed and deleted keys are not ours)."""
    out = []
    for page in kms.get_paginator("list_keys").paginate():
        for key in page["Keys"]:
            meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
            if meta.get("KeyManager") != "CUSTOMER" or meta.get("KeyState") == "PendingDeletion":
                continue
            tags = _tags(kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags"), "TagKey", "TagValue")
            if not _ours(tags, stack):
                continue
            spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
            rotation = False
            if spec == "SYMMETRIC_DEFAULT":
                rotation = kms.get_key_rotation_status(KeyId=key["KeyId"]).get("KeyRotationEnabled", False)
            out.append(_res(KEY, meta["KeyId"], {
                "arn": meta["Arn"], "enableKeyRotation": rotation, "customerMasterKeySpec": spec,
                "keyUsage": meta.get("KeyUsage"), "tags": tags,
            }))
    return out


def trail_resources(cloudtrail: Any, stack: str | None) -> list[Resource]:
    """Trails tagged with the stack, with their logging state (``enableLogging``)."""
    out = []
    for trail in cloudtrail.describe_trails(includeShadowTrails=False).get("trailList", []):
        tag_lists = cloudtrail.list_tags(ResourceIdList=[trail["TrailARN"]]).get("ResourceTagList", [])
        tags = _tags(tag_lists[0].get("TagsList") if tag_lists else [])
        if not _ours(tags, stack):
            continue
        status = cloudtrail.get_trail_status(Name=trail["TrailARN"])
        out.append(_res(TRAIL, trail["Name"], {
            "name": trail["Name"],
            "s3BucketName": trail.get("S3BucketName"),
            "isMultiRegionTrail": bool(trail.get("IsMultiRegionTrail")),
            "enableLogFileValidation": bool(trail.get("LogFileValidationEnabled")),
            "kmsKeyId": trail.get("KmsKeyId"),
            "enableLogging": bool(status.get("IsLogging")),
            "tags": tags,
        }))
    return out


def fsx_resources(fsx: Any, stack: str | None) -> list[Resource]:
    """FSx for Lustre file systems tagged with the stack."""
    out = []
    for page in fsx.get_paginator("describe_file_systems").paginate():
        for fs in page["FileSystems"]:
            tags = _tags(fs.get("Tags"))
            if fs.get("FileSystemType") != "LUSTRE" or not _ours(tags, stack):
                continue
            out.append(_res(LUSTRE, fs["FileSystemId"], {
                "deploymentType": fs.get("LustreConfiguration", {}).get("DeploymentType"),
                "kmsKeyId": fs.get("KmsKeyId"),
                "storageCapacity": fs.get("StorageCapacity"),
                "tags": tags,
            }))
    return out


#: service -> adapter, in report order. A service the endpoint lacks is reported, not skipped silently.
ADAPTERS: dict[str, Callable[[Any, str], list[Resource]]] = {
    "ec2": ec2_resources,
    "s3": s3_resources,
    "kms": kms_resources,
    "cloudtrail": trail_resources,
    "fsx": fsx_resources,
}

