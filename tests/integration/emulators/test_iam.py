"""(d) The IAM policy documents the program generates are accepted by the emulators' IAM, and the
node role's policy allows exactly the intended S3 actions (SimulatePrincipalPolicy where the
emulator implements it).
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from infra import outputs as out

from ._stack import ROLE, ROLE_POLICY, declared, offline_run

pytestmark = pytest.mark.emulator

STACK = "dev"
#: What a training node must do with its checkpoint bucket — the spec, stated independently of
#: infra.iam_policies: list the bucket; read, write, delete objects; clean up multipart uploads.
INTENDED_BUCKET_ACTIONS = {"s3:ListBucket"}
INTENDED_OBJECT_ACTIONS = {
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}
#: Probed actions: the intended ones plus what a node must never do.
PROBE_ACTIONS = sorted(
    INTENDED_BUCKET_ACTIONS
    | INTENDED_OBJECT_ACTIONS
    | {
        "s3:*",
        "s3:CreateBucket",
        "s3:DeleteBucket",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketAcl",
        "s3:PutObjectAcl",
        "s3:PutBucketVersioning",
        "s3:PutEncryptionConfiguration",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketPublicAccessBlock",
        "s3:DeleteObjectVersion",
        "s3:ListAllMyBuckets",
    }
)


def _role_policies():
    run = offline_run(STACK)
    return {r.name: declared(r)["policy"] for r in run.of_type(ROLE_POLICY)}


def _node_policy_and_trust() -> tuple[str, str]:
    run = offline_run(STACK)
    (node_policy,) = [r for r in run.of_type(ROLE_POLICY) if r.name.endswith("-node-policy")]
    (node_role,) = [r for r in run.of_type(ROLE) if r.name.endswith("-node-role")]
    return declared(node_policy)["policy"], declared(node_role)["assumeRolePolicy"]


def test_program_declares_role_policies():
    names = set(_role_policies())
    assert {f"{STACK}-security-node-policy", f"{STACK}-network-flow-logs"} <= names


@pytest.mark.parametrize("policy_name", sorted(_role_policies()))
def test_emulator_iam_accepts_generated_policy(aws, unique, policy_name):
    document = _role_policies()[policy_name]
    iam = aws("iam")
    created = iam.create_policy(PolicyName=f"{unique}-{policy_name}", PolicyDocument=document)["Policy"]
    try:
        version = iam.get_policy_version(PolicyArn=created["Arn"], VersionId=created["DefaultVersionId"])
        stored = version["PolicyVersion"]["Document"]
        stored = json.loads(stored) if isinstance(stored, str) else stored
        assert stored == json.loads(document)
    finally:
        iam.delete_policy(PolicyArn=created["Arn"])


def test_emulator_iam_rejects_a_malformed_policy(aws, unique):
    """The acceptance test above can fail: the emulators validate policy grammar."""
    bad = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "GetObject"}]})
    with pytest.raises(ClientError, match="MalformedPolicyDocument"):
        aws("iam").create_policy(PolicyName=f"{unique}-bad", PolicyDocument=bad)


#: Emulators known not to implement the IAM policy simulator (checked, not guessed: moto 5.2.5
#: answers SimulatePrincipalPolicy with HTTP 500 and logs NotImplementedError).
NO_SIMULATOR = {"moto": "moto 5.2.5 does not implement iam:SimulatePrincipalPolicy (HTTP 500, NotImplementedError)"}


def _simulate(iam, role_arn: str, resources: list[str]) -> set[tuple[str, str]]:
    results = iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=PROBE_ACTIONS, ResourceArns=resources)
    return {(r["EvalActionName"], r["EvalResourceName"]) for r in results["EvaluationResults"]
            if r["EvalDecision"] == "allowed"}


def test_node_role_allows_exactly_the_intended_s3_actions(aws, emulator, unique):
    if emulator.name in NO_SIMULATOR:
        pytest.skip(NO_SIMULATOR[emulator.name] + "; policy acceptance is still tested against it")
    policy, trust = _node_policy_and_trust()
    bucket_arn = f"arn:aws:s3:::{offline_run(STACK).outputs[out.CHECKPOINT_BUCKET]}"
    other_arn = "arn:aws:s3:::some-other-bucket"
    iam = aws("iam")
    role = iam.create_role(RoleName=f"{unique}-node", AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="node", PolicyDocument=policy)
    try:
        # LocalStack's simulator matches resources literally (no wildcard expansion), so the
        # object resource is given in the policy's own form "<bucket>/*"; real IAM accepts it too.
        allowed = _simulate(iam, role["Arn"], [bucket_arn, f"{bucket_arn}/*", other_arn, f"{other_arn}/*"])
    finally:
        iam.delete_role_policy(RoleName=role["RoleName"], PolicyName="node")
        iam.delete_role(RoleName=role["RoleName"])
    expected = {(a, bucket_arn) for a in INTENDED_BUCKET_ACTIONS} | {
        (a, f"{bucket_arn}/*") for a in INTENDED_OBJECT_ACTIONS
    }
    assert allowed == expected
