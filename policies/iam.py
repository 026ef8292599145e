"""IAM rules: no full admin and no service-wide wildcards in customer policies (FSBP IAM.1, IAM.21)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._model import ADVISORY, MANDATORY, Rule, as_list, get, policy_document, short, statements

POLICY = "aws:iam/policy:Policy"
ROLE = "aws:iam/role:Role"
INLINE_POLICY_TYPES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/userPolicy:UserPolicy",
                       "aws:iam/groupPolicy:GroupPolicy")
POLICY_TYPES = (POLICY, ROLE, *INLINE_POLICY_TYPES)
ATTACHMENT_TYPES = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
                    "aws:iam/policyAttachment:PolicyAttachment")
ADMIN_POLICY_SUFFIX = ":policy/AdministratorAccess"


def _documents(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(label, policy text) pairs: a role's inline policies, or the resource's ``policy``."""
    if resource_type == ROLE:
        return [(f"inlinePolicies[{get(p, 'name', default=i)}]", get(p, "policy"))
                for i, p in enumerate(as_list(get(props, "inlinePolicies"))) if get(p, "policy") is not None]
    return [("policy", get(props, "policy"))] if get(props, "policy") is not None else []


def _allow_statements(resource_type: str, props: Mapping[str, Any]) -> tuple[list[tuple[str, Mapping]], list[str]]:
    found, errors = [], []
    for label, text in _documents(resource_type, props):
        doc = policy_document(text)
        if doc is None:
            errors.append(f"{short(resource_type)} {label} is not a JSON policy document.")
            continue
        found += [(label, s) for s in statements(doc) if s.get("Effect") == "Allow"]
    return found, errors


def admin_wildcard_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """IAM.1: no statement allows Action "*" on Resource "*" (full administrator).

    An Allow with ``NotAction`` or ``NotResource`` grants everything not listed (``NotAction: iam:*``
    on ``*`` is admin minus IAM), so it is reported whatever it lists.

    Attaching the AWS-managed ``AdministratorAccess`` policy (an attachment resource or a role's
    ``managedPolicyArns``) grants the same and is reported too.
    """
    arns = [get(props, "policyArn")] if resource_type in ATTACHMENT_TYPES else as_list(get(props, "managedPolicyArns"))
    out = [f"{short(resource_type)} attaches {arn}: grant a scoped policy instead of full administrator."
           for arn in arns if isinstance(arn, str) and arn.endswith(ADMIN_POLICY_SUFFIX)]
    if resource_type in ATTACHMENT_TYPES:
        return out
    found, errors = _allow_statements(resource_type, props)
    out += errors
    for label, stmt in found:
        negated = [f"{key} {stmt.get(key)!r}" for key in ("NotAction", "NotResource") if key in stmt]
        if negated:
            out.append(f"{short(resource_type)} {label} has an Allow with {' and '.join(negated)}: it grants "
                       "everything not listed (including what AWS adds later); list the allowed Action and "
                       "Resource instead.")
            continue
        actions = as_list(stmt.get("Action"))
        if ("*" in actions or "*:*" in actions) and "*" in as_list(stmt.get("Resource")):
            out.append(f"{short(resource_type)} {label} allows Action \"*\" on Resource \"*\": grant the "
                       "specific actions and resources the workload needs.")
    return out


def service_wildcard_violations(
    resource_type: str, props: Mapping[str, Any], config: Mapping | None = None
) -> list[str]:
    """IAM.21: no allowed action is a whole-service wildcard such as ``s3:*`` (least privilege)."""
    found, _ = _allow_statements(resource_type, props)  # invalid JSON is reported by IAM.1's rule
    return [
        f"{short(resource_type)} {label} allows {action!r}: list the actions needed instead of a "
        "service-wide wildcard."
        for label, stmt in found
        for action in as_list(stmt.get("Action"))
        if isinstance(action, str) and action.endswith(":*") and not action.startswith("*")  # "*:*" is IAM.1
    ]


RULES = [
    Rule(
        name="iam-no-admin-wildcard",
        control="FSBP IAM.1",
        level=MANDATORY,
        description='IAM policies do not allow Action "*" on Resource "*", nor Allow with NotAction/NotResource '
                    "(nor attach AdministratorAccess).",
        remediation="Scope actions and resources; use AWS managed job-function policies for admins.",
        validator=admin_wildcard_violations,
        resource_types=POLICY_TYPES + ATTACHMENT_TYPES,
    ),
    Rule(
        name="iam-no-service-wildcard",
        control="FSBP IAM.21",
        level=ADVISORY,
        description='IAM policies avoid whole-service wildcard actions such as "s3:*".',
        remediation='Replace "s3:*" with the actions used, e.g. s3:GetObject, s3:PutObject, s3:ListBucket.',
        validator=service_wildcard_violations,
        resource_types=POLICY_TYPES,
    ),
]
