"""Post-deploy audit (``python -m infra.verify``) against the emulators.

A compliant set of resources gives no finding; an independent, deliberately broken set gives
exactly the planted findings, each on its resource. Every set carries its own ``aidc:stack`` tag,
so sets of other tests and earlier runs in the same emulator do not interfere.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from infra import iam_policies as pol
from infra.offline import REPO_ROOT
from infra.tags import TAG_CLUSTER, TAG_STACK
from infra.verify import findings_by_resource, main, run_audit

from ._ec2 import tag_list

pytestmark = pytest.mark.emulator

REGION = "us-east-1"


def _tags(stack: str) -> list[dict[str, str]]:
    return tag_list({TAG_STACK: stack, TAG_CLUSTER: "audit"})


def _key(aws, stack: str, rotate: bool) -> dict:
    kms = aws("kms")
    key = kms.create_key(Tags=[{"TagKey": k["Key"], "TagValue": k["Value"]} for k in _tags(stack)])["KeyMetadata"]
    if rotate:
        kms.enable_key_rotation(KeyId=key["KeyId"])
    return key


def _bucket(aws, name: str, stack: str, key_arn: str | None) -> str:
    """A bucket hardened like the program's (PAB, SSE-KMS, versioning, TLS-only) when given a key;
    else public access allowed, no SSE-KMS, no versioning, no policy."""
    s3 = aws("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(stack)})
    flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    # Explicit either way: new buckets get all four flags on by default (AWS since 2023, LocalStack).
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={f: key_arn is not None for f in flags})
    if key_arn is None:
        return name
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True,
    }]})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(pol.tls_only_bucket_policy(f"arn:aws:s3:::{name}")))
    return name


def _ec2_set(aws, image: str, stack: str, key_arn: str, compliant: bool) -> dict[str, str]:
    """Instance, standalone volume, launch template, security group; returns kind -> id."""
    ec2 = aws("ec2")
    tags = _tags(stack)
    tokens = "required" if compliant else "optional"
    ebs = {"Encrypted": True, "KmsKeyId": key_arn, "VolumeSize": 20} if compliant else {"VolumeSize": 20}
    root = {"DeviceName": "/dev/sda1", "Ebs": {"Encrypted": True, "KmsKeyId": key_arn, "VolumeSize": 20}}
    (inst,) = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, MetadataOptions={"HttpTokens": tokens}, BlockDeviceMappings=[root],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    vol = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=10, TagSpecifications=[
        {"ResourceType": "volume", "Tags": tags}], **({"Encrypted": True, "KmsKeyId": key_arn} if compliant else {}))
    lt = ec2.create_launch_template(LaunchTemplateName=f"{stack}-lt", LaunchTemplateData={
        "MetadataOptions": {"HttpTokens": tokens},
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": ebs}],
    })["LaunchTemplate"]
    ec2.create_tags(Resources=[lt["LaunchTemplateId"]], Tags=tags)
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    sg = ec2.create_security_group(GroupName=f"{stack}-sg", Description="audit test", VpcId=vpc,
                                   TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
    source = {"IpRanges": [{"CidrIp": "10.77.0.0/16"}]} if compliant else {"IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **source}])
    return {"instance": inst["InstanceId"], "volume": vol["VolumeId"], "lt": lt["LaunchTemplateId"], "sg": sg}


def _trail(aws, stack: str, bucket: str, key_arn: str, compliant: bool) -> str:
    cloudtrail = aws("cloudtrail")
    extra = {"IsMultiRegionTrail": True, "EnableLogFileValidation": True, "KmsKeyId": key_arn} if compliant else {}
    name = f"{stack}-trail"
    cloudtrail.create_trail(Name=name, S3BucketName=bucket, TagsList=_tags(stack), **extra)
    if compliant:
        cloudtrail.start_logging(Name=name)
    return name


def _has_cloudtrail(emulator) -> bool:
    return emulator.name != "localstack"  # LocalStack 4.8.1 community: CloudTrail is a licensed service


@pytest.fixture
def compliant(aws, emulator, known_image, unique):
    stack = f"ok-{unique}"
    key = _key(aws, stack, rotate=True)
    bucket = _bucket(aws, f"{stack}-data", stack, key["Arn"])
    _ec2_set(aws, known_image(emulator), stack, key["Arn"], compliant=True)
    if _has_cloudtrail(emulator):
        _trail(aws, stack, bucket, key["Arn"], compliant=True)
    return stack


@pytest.fixture
def broken(aws, emulator, known_image, unique):
    """(stack, {resource id: {planted rule, ...}}): every violation the audit must find."""
    stack = f"bad-{unique}"
    good_key = _key(aws, f"elsewhere-{unique}", rotate=True)  # a CMK of another stack, for encrypted roots
    bad_key = _key(aws, stack, rotate=False)
    bucket = _bucket(aws, f"{stack}-data", stack, key_arn=None)
    ids = _ec2_set(aws, known_image(emulator), stack, good_key["Arn"], compliant=False)
    planted = {
        bad_key["KeyId"]: {"kms-key-rotation"},
        bucket: {"s3-public-access-block", "s3-sse-kms", "s3-versioning", "s3-tls-only"},
        ids["instance"]: {"ec2-imdsv2-required"},
        ids["volume"]: {"ebs-volume-encrypted"},
        ids["lt"]: {"ec2-imdsv2-required", "ec2-block-devices-encrypted"},
        ids["sg"]: {"sg-no-world-ingress"},
    }
    if _has_cloudtrail(emulator):
        trail = _trail(aws, stack, bucket, bad_key["Arn"], compliant=False)
        planted[trail] = {"cloudtrail-multi-region", "cloudtrail-log-validation", "cloudtrail-kms"}
    return stack, planted


def _rules(report) -> dict[str, set[str]]:
    return {rid: rules for rid, rules in findings_by_resource(report).items() if rules}


def test_compliant_set_has_no_finding(aws_endpoint, compliant):
    report = run_audit(compliant, REGION, aws_endpoint)
    assert len(report.resources) >= 6  # key, bucket (+ its settings), instance, volume, template, SG
    assert _rules(report) == {}


def test_every_planted_violation_is_found(aws_endpoint, broken):
    stack, planted = broken
    report = run_audit(stack, REGION, aws_endpoint)
    found = _rules(report)
    # S3 settings are reported on the bucket's own settings resources ("<bucket>/..."): fold them in.
    folded: dict[str, set[str]] = {}
    for rid, rules in found.items():
        folded.setdefault(rid.split("/", 1)[0], set()).update(rules)
    assert folded == planted


def test_cli_exit_status_and_json(aws_endpoint, broken, compliant, tmp_path, capsys):
    stack, planted = broken
    out = tmp_path / "audit.json"
    assert main(["--stack", stack, "--endpoint-url", aws_endpoint, "--region", REGION, "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert data["summary"]["mandatory"] >= sum(len(r) for r in planted.values())
    assert {f["rule"] for r in data["resources"] for f in r["findings"]} == set().union(*planted.values())
    assert f"{data['summary']['mandatory']} mandatory" in capsys.readouterr().out
    assert main(["--stack", compliant, "--endpoint-url", aws_endpoint, "--region", REGION]) == 0


def test_all_resources_mode_judges_untagged_resources_too(aws, aws_endpoint, broken):
    stack, planted = broken
    ec2 = aws("ec2")
    untagged = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8, Encrypted=False)["VolumeId"]
    try:
        assert untagged not in findings_by_resource(run_audit(stack, REGION, aws_endpoint))
        found = _rules(run_audit(None, REGION, aws_endpoint))  # --all-resources
        folded: dict[str, set[str]] = {}
        for rid, rules in found.items():
            folded.setdefault(rid.split("/", 1)[0], set()).update(rules)
        assert folded[untagged] == {"ebs-volume-encrypted"}
        for rid, rules in planted.items():  # the stack's planted findings are all still there
            assert rules <= folded[rid]
    finally:
        ec2.delete_volume(VolumeId=untagged)


def test_unknown_stack_is_an_error_not_a_pass(aws_endpoint, unique, capsys):
    assert main(["--stack", f"none-{unique}", "--endpoint-url", aws_endpoint]) == 2
    assert "no resources tagged aidc:stack=" in capsys.readouterr().out


def test_unreachable_endpoint_is_a_clear_error_without_traceback(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "infra.verify", "--stack", "x", "--endpoint-url", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("endpoint", ["notaurl", "localhost:4566", "ftp://127.0.0.1/"])
def test_malformed_endpoint_is_refused_before_any_call(endpoint, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--stack", "x", "--endpoint-url", endpoint])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument --endpoint-url: {endpoint!r} is not an http(s) URL with a host" in err


@pytest.mark.needs_services("fsx")
def test_lustre_without_cmk_is_found(aws, aws_endpoint, unique):
    stack = f"fsx-{unique}"
    key = _key(aws, f"elsewhere-{unique}", rotate=True)
    fsx = aws("fsx")
    common = {"FileSystemType": "LUSTRE", "StorageCapacity": 1200, "SubnetIds": ["subnet-0123456789abcdef0"],
              "Tags": _tags(stack)}
    good = fsx.create_file_system(KmsKeyId=key["Arn"], LustreConfiguration={
        "DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 250}, **common)["FileSystem"]
    bad = fsx.create_file_system(LustreConfiguration={"DeploymentType": "SCRATCH_2"}, **common)["FileSystem"]
    found = _rules(run_audit(stack, REGION, aws_endpoint))
    assert found == {bad["FileSystemId"]: {"fsx-lustre-cmk"}}
    assert good["FileSystemId"] not in found
