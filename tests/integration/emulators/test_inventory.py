"""(a) Instances launched in the emulator with exactly the tags and launch-template data the program
declares (from an offline run of the example stack) are grouped by ``ansible/inventory/aws_ec2.yml``
into the expected ``pool_<name>`` / ``role_<role>`` groups.

The inventory file is used twice: as shipped, with its documented environment overrides
(``AWS_URL``, ``AIDC_CLUSTER``); and through a temporary copy that only sets plugin options
(``endpoint_url``, ``regions`` and one more ``filters`` entry: this run's ``aidc:stack`` tag), so that
instances of other tests and earlier runs in the same emulator stay out and groups can be compared
exactly.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from infra import outputs as out
from infra.offline import REPO_ROOT
from infra.tags import TAG_CLUSTER, TAG_POOL, TAG_ROLE, TAG_STACK

from ._ec2 import launch_template_data, run_instance_args, tag_list, tag_map
from ._stack import INSTANCE, LAUNCH_TEMPLATE, declared, offline_run

pytestmark = pytest.mark.emulator

INVENTORY = REPO_ROOT / "ansible" / "inventory" / "aws_ec2.yml"
ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")
#: Example stacks with fixed instances (the inference stack's instances come from an Auto Scaling
#: group, which neither emulator launches from a template faithfully).
STACKS = ("dev", "p5")
#: One aidc:stack value per test session: both emulators keep state across runs.
SESSION = uuid.uuid4().hex[:8]


def _stand_ins(aws, run, unique: str, image: str) -> dict[str, str]:
    """Create the VPC pieces, CMK, instance profile and AMI the template refers to; mock id -> emulator id."""
    ec2 = aws("ec2")
    cidr = run.outputs[out.VPC_CIDR]
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    remap: dict[str, str] = {}
    subnets = ipaddress.ip_network(cidr).subnets(new_prefix=24)
    for az, mock_id in sorted(run.outputs[out.PRIVATE_SUBNET_IDS].items()):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=str(next(subnets)), AvailabilityZone=az)
        remap[mock_id] = subnet["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName=f"{unique}-nodes", Description="aidc test nodes", VpcId=vpc)
    remap[run.outputs[out.NODE_SECURITY_GROUP_ID]] = sg["GroupId"]
    remap[run.outputs[out.KMS_KEY_ARN]] = aws("kms").create_key()["KeyMetadata"]["Arn"]
    (profile,) = run.of_type("aws:iam/instanceProfile:InstanceProfile")
    created = aws("iam").create_instance_profile(InstanceProfileName=f"{unique}-node")["InstanceProfile"]
    remap[declared(profile)["arn"]] = created["Arn"]
    for lt in run.of_type(LAUNCH_TEMPLATE):
        remap[declared(lt)["imageId"]] = image
    return remap


@pytest.fixture(params=STACKS, scope="module")
def launched(request, emulator, known_image):
    """(offline run, {template id: declared}, {instance id: declared Instance}) of one example stack,
    launched once per emulator (module scope: launching is the slow part)."""
    unique = f"t{uuid.uuid4().hex[:10]}"
    run = offline_run(request.param, stack_name=f"{request.param}-{SESSION}")
    aws = emulator.client
    ec2 = aws("ec2")
    remap = _stand_ins(aws, run, unique, known_image(emulator))
    templates, instances = {}, {}
    try:
        for lt in run.of_type(LAUNCH_TEMPLATE):
            decl = declared(lt)
            created = ec2.create_launch_template(
                LaunchTemplateName=f"{unique}-{decl['name']}", LaunchTemplateData=launch_template_data(decl, remap)
            )["LaunchTemplate"]
            # Tagged afterwards: with create-time TagSpecifications LocalStack 4.8.1 empties the
            # template's own TagSpecifications and moto merges them into the template data.
            ec2.create_tags(Resources=[created["LaunchTemplateId"]], Tags=tag_list(decl["tags"]))
            templates[lt.id] = (created["LaunchTemplateId"], decl)
        for inst in run.of_type(INSTANCE):
            decl = declared(inst)
            lt_id, _ = templates[decl["launchTemplate"]["id"]]
            (reply,) = ec2.run_instances(**run_instance_args(decl, lt_id))["Instances"]
            instances[reply["InstanceId"]] = decl
        yield run, templates, instances
    finally:
        if instances:
            ec2.terminate_instances(InstanceIds=sorted(instances))
        for lt_id, _ in templates.values():
            ec2.delete_launch_template(LaunchTemplateId=lt_id)


def _ansible_inventory(path: Path, cwd: Path, **env: str) -> dict:
    # The repository's ansible.cfg: plugin allowlist and any_unparsed_is_failed, as in real runs.
    env = {**os.environ, "ANSIBLE_CONFIG": str(INVENTORY.parent.parent / "ansible.cfg"), **env}
    proc = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Failed to parse" not in proc.stderr and "No inventory was parsed" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def _inventory(tmp_path: Path, endpoint: str, stack_name: str) -> dict:
    """The inventory through a copy whose plugin options add this run's stack filter."""
    options = yaml.safe_load(INVENTORY.read_text())
    options["endpoint_url"] = endpoint
    options["regions"] = ["us-east-1"]
    options["filters"] = {**(options.get("filters") or {}), f"tag:{TAG_STACK}": stack_name}
    copy = tmp_path / "aws_ec2.yml"  # the plugin only reads files named *aws_ec2.yml
    copy.write_text(yaml.safe_dump(options))
    return _ansible_inventory(copy, tmp_path, AIDC_CLUSTER="*")


def _unsafe(value):
    """ansible-core 2.19 ``--list`` wraps strings from the cloud as ``{"__ansible_unsafe": s}``."""
    return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value


def _group_ids(inventory: dict, group: str) -> set[str]:
    hostvars = inventory["_meta"]["hostvars"]
    return {_unsafe(hostvars[h]["instance_id"]) for h in inventory.get(group, {}).get("hosts", [])}


def test_template_keeps_the_declared_data(aws, launched):
    run, templates, _ = launched
    ec2 = aws("ec2")
    for lt_id, decl in templates.values():
        (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id, Versions=["$Latest"])[
            "LaunchTemplateVersions"
        ]
        data = version["LaunchTemplateData"]
        assert data["InstanceType"] == decl["instanceType"]
        assert data["MetadataOptions"]["HttpTokens"] == decl["metadataOptions"]["httpTokens"] == "required"
        assert {s["ResourceType"]: tag_map(s["Tags"]) for s in data["TagSpecifications"]} == {
            s["resourceType"]: s["tags"] for s in decl["tagSpecifications"]
        }
        (root,) = data["BlockDeviceMappings"]
        assert root["Ebs"]["Encrypted"] is True and root["Ebs"]["VolumeType"] == "gp3"
        layout = [(n["NetworkCardIndex"], n["DeviceIndex"], n["InterfaceType"]) for n in data["NetworkInterfaces"]]
        assert layout == [
            (int(n["networkCardIndex"]), int(n["deviceIndex"]), n["interfaceType"]) for n in decl["networkInterfaces"]
        ]


def test_instances_carry_the_declared_tags(aws, launched):
    _, _, instances = launched
    reservations = aws("ec2").describe_instances(InstanceIds=sorted(instances))["Reservations"]
    live = {i["InstanceId"]: tag_map(i.get("Tags")) for r in reservations for i in r["Instances"]}
    for instance_id, decl in instances.items():
        # Emulators may add their own aws:* tags (moto records the launch template); ours must all be there.
        assert decl["tags"].items() <= live[instance_id].items()


def test_inventory_groups_instances_by_pool_and_role(aws, aws_endpoint, launched, tmp_path):
    run, _, instances = launched
    inventory = _inventory(tmp_path, aws_endpoint, run.stack)
    expected: dict[str, set[str]] = {}
    for instance_id, decl in instances.items():
        expected.setdefault(f"pool_{decl['tags'][TAG_POOL]}", set()).add(instance_id)
        expected.setdefault(f"role_{decl['tags'][TAG_ROLE]}", set()).add(instance_id)
    assert expected, "the example stack declares no instances"
    for group, ids in expected.items():
        assert _group_ids(inventory, group) == ids, group
    found = {g for g in inventory if g.startswith(("pool_", "role_"))}
    assert found == set(expected)
    # tests/hosts reads aidc_instance_type for its catalog GPU/EFA count checks: it must be what EC2
    # says the instance is (LocalStack does not take the type from the launch template; moto does).
    reservations = aws("ec2").describe_instances(InstanceIds=sorted(instances))["Reservations"]
    live = {i["InstanceId"]: i["InstanceType"] for r in reservations for i in r["Instances"]}
    hostvars = inventory["_meta"]["hostvars"].values()
    seen = {_unsafe(h["instance_id"]): _unsafe(h["aidc_instance_type"]) for h in hostvars}
    assert {i: seen.get(i) for i in instances} == live


def test_inventory_file_unchanged_with_its_environment_overrides(aws_endpoint, launched, tmp_path):
    """The file as shipped, pointed at the emulator with its documented variables (AWS_URL,
    AIDC_CLUSTER). Only the cluster narrows the listing here, so instances of the same example
    cluster launched by a concurrent run may show up too: ours must be in the right groups."""
    _, _, instances = launched
    cluster = next(iter(instances.values()))["tags"][TAG_CLUSTER]
    inventory = _ansible_inventory(INVENTORY, tmp_path, AWS_URL=aws_endpoint, AWS_REGION="us-east-1",
                                   AIDC_CLUSTER=cluster)
    for instance_id, decl in instances.items():
        for group in (f"pool_{decl['tags'][TAG_POOL]}", f"role_{decl['tags'][TAG_ROLE]}", f"cluster_{cluster}"):
            assert instance_id in _group_ids(inventory, group), group
    # train.yml refuses hosts of several clusters by this variable.
    clusters = {_unsafe(h["instance_id"]): _unsafe(h["aidc_cluster"]) for h in inventory["_meta"]["hostvars"].values()}
    assert {clusters.get(i) for i in instances} == {cluster}
