"""S3 rules over buckets and their attached configuration resources (FSBP S3.1/5/8/14/17).

In pulumi-aws v7 a bucket's settings live in separate resources (``BucketPublicAccessBlock``,
``BucketServerSideEncryptionConfiguration``, ``BucketVersioning``, ``BucketPolicy``) that point at
the bucket through their ``bucket`` property, so these are stack rules: they join each bucket with
what is attached to it. v6 names (``BucketV2``, ``...V2``) are accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._model import (
    MANDATORY,
    Rule,
    StackIndex,
    StackResource,
    StackViolation,
    as_list,
    get,
    policy_document,
    safe,
    statements,
    truthy,
)

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
SSE_CONFIGS = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
VERSIONINGS = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACLS = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
PUBLIC_GROUPS = ("http://acs.amazonaws.com/groups/global/AllUsers",
                 "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")

PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


def _attached(index: StackIndex, types: Sequence[str]) -> dict[str, list[StackResource]]:
    """bucket URN -> the resources of ``types`` whose ``bucket`` property points at it."""
    out: dict[str, list[StackResource]] = {}
    for res in index.of_type(*types):
        ref = safe(lambda res=res: get(res.props, "bucket"))
        for bucket in index.resolve(res, "bucket", ref, BUCKETS):
            out.setdefault(bucket.urn, []).append(res)
    return out


def _missing_flags(props: Mapping[str, Any]) -> list[str]:
    return [flag for flag in PAB_FLAGS if not truthy(get(props, flag))]


def public_access_block_violations(
    resources: Sequence[StackResource], config: Mapping | None = None
) -> list[StackViolation]:
    """S3.8 (S3.1): every bucket is covered by a public access block with all four flags true.

    An ``AccountPublicAccessBlock`` with all four flags covers every bucket of the account.
    """
    index = StackIndex(resources)
    out = [
        StackViolation(pab.urn, pab.name, f"{pab.name}: {', '.join(_missing_flags(pab.props))} not true; "
                       "set all four public-access-block flags to true.")
        for pab in index.of_type(PUBLIC_ACCESS_BLOCK, ACCOUNT_PUBLIC_ACCESS_BLOCK)
        if _missing_flags(pab.props)
    ]
    account_wide = any(not _missing_flags(p.props) for p in index.of_type(ACCOUNT_PUBLIC_ACCESS_BLOCK))
    blocks = _attached(index, (PUBLIC_ACCESS_BLOCK,))
    for bucket in index.of_type(*BUCKETS):
        if account_wide or any(not _missing_flags(p.props) for p in blocks.get(bucket.urn, [])):
            continue
        if bucket.urn not in blocks:
            out.append(StackViolation(bucket.urn, bucket.name, f"Bucket {bucket.name} has no "
                                      "BucketPublicAccessBlock: add one with all four flags true."))
    return out


def _sse_rules_kms(rules: Any) -> bool:
    rules = as_list(rules)
    return bool(rules) and all(
        get(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") in KMS_ALGORITHMS for r in rules
    )


def sse_kms_violations(resources: Sequence[StackResource], config: Mapping | None = None) -> list[StackViolation]:
    """S3.17: buckets are encrypted at rest with KMS (``aws:kms`` or ``aws:kms:dsse``), not SSE-S3."""
    index = StackIndex(resources)
    configs = _attached(index, SSE_CONFIGS)
    out = []
    for bucket in index.of_type(*BUCKETS):
        attached = configs.get(bucket.urn, [])
        if attached:
            ok = all(_sse_rules_kms(get(c.props, "rules")) for c in attached)
        else:
            ok = _sse_rules_kms(get(bucket.props, "serverSideEncryptionConfiguration", "rule"))
        if not ok:
            out.append(StackViolation(bucket.urn, bucket.name, f"Bucket {bucket.name} is not encrypted with "
                                      "SSE-KMS: add a BucketServerSideEncryptionConfiguration with "
                                      "sseAlgorithm \"aws:kms\" and kmsMasterKeyId = your CMK."))
    return out


def versioning_violations(resources: Sequence[StackResource], config: Mapping | None = None) -> list[StackViolation]:
    """S3.14: bucket versioning is Enabled (a BucketVersioning resource or the inline v6 block)."""
    index = StackIndex(resources)
    versionings = _attached(index, VERSIONINGS)
    out = []
    for bucket in index.of_type(*BUCKETS):
        attached = versionings.get(bucket.urn, [])
        if attached:
            ok = all(get(v.props, "versioningConfiguration", "status") == "Enabled" for v in attached)
        else:
            ok = truthy(get(bucket.props, "versioning", "enabled"))
        if not ok:
            out.append(StackViolation(bucket.urn, bucket.name, f"Bucket {bucket.name} versioning is not "
                                      "Enabled: add BucketVersioning(versioning_configuration={status: "
                                      "\"Enabled\"})."))
    return out


S3_ARN = re.compile(r"^arn:[^:]*:s3:::(?P<tail>.*)$")


def _glob(pattern: str) -> re.Pattern[str]:
    """An IAM resource pattern (``*`` any run, ``?`` one character) as a regex."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def _coverage(tails: list[str], bucket: str | None) -> tuple[bool, bool]:
    """(bucket covered, every object covered) by S3 resource tails (ARNs without ``arn:<p>:s3:::``).

    With the bucket's name unknown (preview), a bucket-level ARN and an ``<arn>/*`` next to it stand in:
    a bucket policy can only name its own bucket.
    """
    if bucket is None:
        levels = {t for t in tails if "/" not in t}
        return bool(levels), "*" in tails or any(f"{t}/*" in tails for t in levels)
    bucket_ok = any(_glob(t).fullmatch(bucket) for t in tails)
    # A pattern covers every key when its part before a final "*" matches a prefix of "<bucket>/".
    prefixes = [f"{bucket}/"[:n] for n in range(len(bucket) + 2)]
    objects_ok = any(t.endswith("*") and any(_glob(t[:-1]).fullmatch(p) for p in prefixes) for t in tails)
    return bucket_ok, objects_ok


def _tls_deny_resources(doc: Mapping[str, Any]) -> list[str] | None:
    """S3 ARNs (or ``*``) the statements denying insecure transport to everyone name; None: no such statement."""
    resources: list[str] | None = None
    for stmt in statements(doc):
        if stmt.get("Effect") != "Deny":
            continue
        secure = get(stmt, "Condition", "Bool", "aws:SecureTransport")
        if not any(str(v).lower() == "false" for v in as_list(secure)):
            continue
        principal = stmt.get("Principal")
        principals = as_list(get(principal, "AWS") if isinstance(principal, Mapping) else principal)
        actions = as_list(stmt.get("Action"))
        if "*" in principals and ("s3:*" in actions or "*" in actions):
            resources = (resources or []) + [r for r in as_list(stmt.get("Resource"))
                                             if isinstance(r, str) and (r == "*" or S3_ARN.match(r))]
    return resources


def _bucket_name(bucket: StackResource) -> str | None:
    """The bucket's name from its ARN or ``bucket`` property; None while both are unknown (preview)."""
    arn = safe(lambda: get(bucket.props, "arn"))
    match = S3_ARN.match(arn) if isinstance(arn, str) else None
    if match and match["tail"]:
        return match["tail"]
    name = safe(lambda: get(bucket.props, "bucket"))
    return name if isinstance(name, str) and name else None


def _tls_finding(bucket: StackResource, docs: list[Mapping[str, Any]]) -> str | None:
    """Why the bucket's policies do not deny non-TLS access to the bucket and all its objects; None if they do."""
    found = [t for t in (_tls_deny_resources(d) for d in docs) if t is not None]
    if not found:
        return (f"Bucket {bucket.name} policy does not deny non-TLS requests: add a Deny statement for "
                "Principal \"*\", Action \"s3:*\" with Condition Bool aws:SecureTransport = \"false\".")
    resources = sorted({r for rs in found for r in rs})
    tails = [r if r == "*" else S3_ARN.match(r)["tail"] for r in resources]
    name = _bucket_name(bucket)
    bucket_ok, objects_ok = _coverage(tails, name)
    if bucket_ok and objects_ok:
        return None
    arn = f"arn:aws:s3:::{name or '<bucket>'}"
    missing = " and ".join(m for m, ok in ((arn, bucket_ok), (f"{arn}/*", objects_ok)) if not ok)
    return (f"Bucket {bucket.name} policy denies non-TLS requests only on Resource {resources}, which leaves "
            f"{missing} reachable over HTTP; make the Deny statement's Resource [\"{arn}\", \"{arn}/*\"].")


def tls_only_violations(resources: Sequence[StackResource], config: Mapping | None = None) -> list[StackViolation]:
    """S3.5: the bucket policy denies every request made without TLS (aws:SecureTransport = false),
    on the bucket and on every object (Resource ``[arn, arn/*]``, ``*`` or a wildcard covering both).

    A policy whose text is unknown during preview is not judged (it is checked on update).
    """
    index = StackIndex(resources)
    policies = _attached(index, (BUCKET_POLICY,))
    out = []
    for bucket in index.of_type(*BUCKETS):
        texts = [safe(lambda p=p: get(p.props, "policy")) for p in policies.get(bucket.urn, [])]
        texts.append(safe(lambda b=bucket: get(b.props, "policy")))
        if any(t is None for t in texts[:-1]):
            continue  # unknown during preview
        docs = [d for d in (policy_document(t) for t in texts if t) if d is not None]
        finding = _tls_finding(bucket, docs)
        if finding:
            out.append(StackViolation(bucket.urn, bucket.name, finding))
    return out


def _public_policy_statements(text: Any) -> int:
    doc = policy_document(text)
    if doc is None:
        return 0
    count = 0
    for stmt in statements(doc):
        principal = stmt.get("Principal")
        principals = as_list(get(principal, "AWS") if isinstance(principal, Mapping) else principal)
        if stmt.get("Effect") == "Allow" and "*" in principals and not stmt.get("Condition"):
            count += 1
    return count


def public_grant_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """S3.2/S3.3: no public canned ACL, no grant to AllUsers/AuthenticatedUsers, no unconditioned
    ``Allow`` to Principal ``"*"`` in a bucket policy."""
    out = []
    if get(props, "acl") in PUBLIC_ACLS:
        out.append(f"Canned ACL {get(props, 'acl')!r} makes the bucket public: use \"private\".")
    grants = as_list(get(props, "grants")) + as_list(get(props, "accessControlPolicy", "grants"))
    uris = [get(g, "uri") or get(g, "grantee", "uri") for g in grants]
    out += [f"ACL grant to {uri} makes the bucket public: remove it." for uri in uris if uri in PUBLIC_GROUPS]
    if _public_policy_statements(get(props, "policy")):
        out.append("Bucket policy allows Principal \"*\" without a condition: name the principals that need "
                   "access (or add a restricting Condition).")
    return out


def _stack_rule(name: str, control: str, description: str, remediation: str, validator: Any) -> Rule:
    return Rule(name=name, control=control, level=MANDATORY, description=description,
                remediation=remediation, validator=validator, kind="stack")


RULES = [
    Rule(name="s3-no-public-grants", control="FSBP S3.2, S3.3", level=MANDATORY,
         description="Buckets grant nothing to the public through ACLs or bucket policies.",
         remediation='acl="private" (or no ACL: BucketOwnerEnforced); policy principals named explicitly',
         validator=public_grant_violations, resource_types=(*BUCKETS, *BUCKET_ACLS, BUCKET_POLICY)),
    _stack_rule("s3-public-access-block", "FSBP S3.8 (S3.1)",
                "Every bucket is covered by a public access block with all four flags true.",
                "aws.s3.BucketPublicAccessBlock(bucket=b.id, block_public_acls=True, block_public_policy=True, "
                "ignore_public_acls=True, restrict_public_buckets=True)",
                public_access_block_violations),
    _stack_rule("s3-sse-kms", "FSBP S3.17",
                "Buckets use SSE-KMS default encryption.",
                'aws.s3.BucketServerSideEncryptionConfiguration(rules=[{apply_server_side_encryption_by_default: '
                '{sse_algorithm: "aws:kms", kms_master_key_id: key.arn}, bucket_key_enabled: True}])',
                sse_kms_violations),
    _stack_rule("s3-versioning", "FSBP S3.14",
                "Bucket versioning is enabled.",
                'aws.s3.BucketVersioning(versioning_configuration={status: "Enabled"}) plus a lifecycle rule '
                "expiring noncurrent versions",
                versioning_violations),
    _stack_rule("s3-tls-only", "FSBP S3.5",
                "Bucket policies deny requests that do not use TLS.",
                'BucketPolicy statement {Effect: Deny, Principal: "*", Action: "s3:*", Resource: [arn, arn/*], '
                'Condition: {Bool: {aws:SecureTransport: "false"}}}',
                tls_only_violations),
]
