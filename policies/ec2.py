"""EC2 rules: IMDSv2, EBS encryption, public IPs, instance type allowlist (FSBP EC2.3, EC2.7, EC2.8, EC2.9).

Everything that launches instances from its own settings is judged: instances, launch templates,
launch configurations (Auto Scaling groups on them) and spot instance requests. Launch
configurations and spot requests carry the instance's property names (``metadataOptions``,
``rootBlockDevice``, ``ebsBlockDevices``, ``associatePublicIpAddress``).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from infra.catalog import CATALOG

from ._model import ADVISORY, MANDATORY, Rule, as_list, falsy_explicit, get, short, truthy

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LAUNCH_CONFIGURATION = "aws:ec2/launchConfiguration:LaunchConfiguration"
SPOT_REQUEST = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
#: Types shaped like an instance (top-level metadataOptions, rootBlockDevice, ebsBlockDevices,
#: associatePublicIpAddress); a spot request may also take its settings from a launch template.
INSTANCE_LIKE = (INSTANCE, SPOT_REQUEST, LAUNCH_CONFIGURATION)
LAUNCHERS = (INSTANCE, LAUNCH_TEMPLATE, LAUNCH_CONFIGURATION, SPOT_REQUEST)
VOLUME = "aws:ebs/volume:Volume"
EBS_DEFAULT_ENCRYPTION = "aws:ebs/encryptionByDefault:EncryptionByDefault"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ASG = "aws:autoscaling/group:Group"


def imdsv2_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EC2.8: instances, launch templates, launch configurations and spot requests require IMDSv2.

    An instance or spot request that names a launch template and sets no ``metadataOptions``
    inherits the template's (checked on the template). ``httpEndpoint: disabled`` turns IMDS off: compliant.
    """
    options = get(props, "metadataOptions")
    if get(options, "httpEndpoint") == "disabled":
        return []
    tokens = get(options, "httpTokens")
    if tokens == "required":
        return []
    if resource_type in (INSTANCE, SPOT_REQUEST) and tokens is None and get(props, "launchTemplate") is not None:
        return []
    shown = "unset (defaults to optional)" if tokens is None else repr(tokens)
    return [
        f"{short(resource_type)} metadataOptions.httpTokens is {shown}: IMDSv1 lets any SSRF bug read "
        "the instance role's credentials; set metadataOptions.httpTokens = \"required\"."
    ]


def _device_violations(devices: list[Any], where: str) -> list[str]:
    out = []
    for i, dev in enumerate(devices):
        if not truthy(get(dev, "encrypted")):
            name = get(dev, "deviceName", default=f"#{i}")
            out.append(f"{where}[{name}] is not encrypted (encrypted = {get(dev, 'encrypted')!r}).")
    return out


def block_device_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EC2.3: every EBS device an instance, launch template, launch configuration or spot request declares
    is encrypted.

    A launch template without any EBS mapping takes the AMI's root snapshot as is (Deep Learning
    AMIs ship unencrypted snapshots), so it must declare the root device with ``encrypted``.
    Launch-template ``ebs.encrypted`` is a string in the schema: ``"true"`` and ``True`` pass.
    """
    if resource_type == LAUNCH_TEMPLATE:
        mappings = [m for m in as_list(get(props, "blockDeviceMappings")) if get(m, "ebs") is not None]
        if not mappings:
            return [
                "LaunchTemplate declares no EBS blockDeviceMappings, so the root volume's encryption "
                "depends on the AMI snapshot; map the root device with ebs.encrypted = \"true\"."
            ]
        return _device_violations(
            [{"deviceName": get(m, "deviceName"), "encrypted": get(m, "ebs", "encrypted")} for m in mappings],
            "LaunchTemplate blockDeviceMappings",
        )
    kind = short(resource_type)
    out: list[str] = []
    root = get(props, "rootBlockDevice")
    if root is None and get(props, "launchTemplate") is None:
        out.append(f"{kind} has no rootBlockDevice: set rootBlockDevice.encrypted = true.")
    elif root is not None:
        out += _device_violations([{"deviceName": "root", "encrypted": get(root, "encrypted")}],
                                  f"{kind} rootBlockDevice")
    # A launch configuration's noDevice mapping suppresses the AMI's device: no volume to encrypt.
    devices = [d for d in as_list(get(props, "ebsBlockDevices")) if not truthy(get(d, "noDevice"))]
    out += _device_violations(devices, f"{kind} ebsBlockDevices")
    return out


def volume_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EC2.3: standalone EBS volumes are encrypted."""
    if truthy(get(props, "encrypted")):
        return []
    return [f"EBS Volume encrypted = {get(props, 'encrypted')!r}: set encrypted = true (and kmsKeyId to a CMK)."]


def ebs_default_encryption_violations(
    resource_type: str, props: Mapping[str, Any], config: Mapping | None = None
) -> list[str]:
    """EC2.7: an ``EncryptionByDefault`` resource, when declared, must enable it."""
    if falsy_explicit(get(props, "enabled")):
        return ["EncryptionByDefault.enabled is false: EBS default encryption must stay on."]
    return []


def public_ip_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EC2.9: instances get no public IPv4 address (nodes are reached through SSM)."""
    if resource_type in INSTANCE_LIKE:
        flags = [get(props, "associatePublicIpAddress")]
    else:
        flags = [get(n, "associatePublicIpAddress") for n in as_list(get(props, "networkInterfaces"))]
    if any(truthy(flag) for flag in flags):
        return [f"{short(resource_type)} associates a public IPv4 address: keep GPU nodes in private subnets "
                "and reach them through SSM Session Manager."]
    return []


def _instance_types(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type == NODE_GROUP:
        return [t for t in as_list(get(props, "instanceTypes")) if isinstance(t, str)]
    if resource_type == ASG:
        overrides = as_list(get(props, "mixedInstancesPolicy", "launchTemplate", "overrides"))
        return [t for t in (get(o, "instanceType") for o in overrides) if isinstance(t, str)]
    value = get(props, "instanceType")
    return [value] if isinstance(value, str) else []


DEFAULT_ALLOWED_TYPES = sorted(CATALOG) + [
    # CPU helpers (head, login, bastion-less SSM jump hosts) from current general-purpose families.
    "t3.*", "t3a.*", "m6i.*", "m7i.*", "m7a.*", "c6i.*", "c7i.*", "r6i.*", "r7i.*", "m7g.*", "t4g.*",
]


def instance_type_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """Cost guard: instance types must match the allowlist (exact names or shell patterns)."""
    allowed = list((config or {}).get("allowedInstanceTypes", DEFAULT_ALLOWED_TYPES))
    return [
        f"{short(resource_type)} uses instance type {t!r}, which is not in allowedInstanceTypes "
        f"({len(allowed)} entries); add it to the policy config or pick an allowed type."
        for t in _instance_types(resource_type, props)
        if not any(fnmatchcase(t, pattern) for pattern in allowed)
    ]


RULES = [
    Rule(
        name="ec2-imdsv2-required",
        control="FSBP EC2.8",
        level=MANDATORY,
        description="EC2 instances, launch templates, launch configurations and spot requests require IMDSv2 "
                    "(httpTokens = required).",
        remediation='metadataOptions = {httpTokens: "required", httpPutResponseHopLimit: 1 (2 for containers)}',
        validator=imdsv2_violations,
        resource_types=LAUNCHERS,
    ),
    Rule(
        name="ec2-block-devices-encrypted",
        control="FSBP EC2.3",
        level=MANDATORY,
        description="Every EBS device of an instance, launch template, launch configuration or spot request is "
                    "encrypted, root included.",
        remediation='LaunchTemplate blockDeviceMappings[].ebs.encrypted = "true"; Instance, LaunchConfiguration, '
                    "SpotInstanceRequest rootBlockDevice.encrypted and ebsBlockDevices[].encrypted = true",
        validator=block_device_violations,
        resource_types=LAUNCHERS,
    ),
    Rule(
        name="ebs-volume-encrypted",
        control="FSBP EC2.3",
        level=MANDATORY,
        description="Standalone EBS volumes are encrypted.",
        remediation="aws.ebs.Volume(encrypted=True, kms_key_id=<CMK ARN>)",
        validator=volume_violations,
        resource_types=(VOLUME,),
    ),
    Rule(
        name="ebs-encryption-by-default",
        control="FSBP EC2.7",
        level=MANDATORY,
        description="EBS default encryption is not switched off.",
        remediation="aws.ebs.EncryptionByDefault(enabled=True)",
        validator=ebs_default_encryption_violations,
        resource_types=(EBS_DEFAULT_ENCRYPTION,),
    ),
    Rule(
        name="ec2-no-public-ip",
        control="FSBP EC2.9",
        level=MANDATORY,
        description="Instances, launch templates, launch configurations and spot requests do not associate "
                    "public IPv4 addresses.",
        remediation="associatePublicIpAddress unset/false; private subnets with NAT; access through SSM.",
        validator=public_ip_violations,
        resource_types=LAUNCHERS,
    ),
    Rule(
        name="instance-type-allowlist",
        control="Cost guard (aidc)",
        level=ADVISORY,
        description="EC2/EKS instance types come from the configured allowlist.",
        remediation="Use a listed type or extend allowedInstanceTypes in the policy config.",
        validator=instance_type_violations,
        resource_types=(*LAUNCHERS, NODE_GROUP, ASG),
        config={
            "allowedInstanceTypes": {
                "type": "array",
                "items": {"type": "string"},
                "default": DEFAULT_ALLOWED_TYPES,
                "description": "Exact instance types or shell patterns such as 'p5.*'.",
            }
        },
    ),
]
