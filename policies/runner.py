"""Run every policy of the pack over recorded resources, without the Pulumi engine.

For mock runs of the program (``pulumi.runtime.set_mocks``) and for tests: resources in engine shape
(``type``, ``name``, camelCase ``props``; optional ``urn``, ``id``, ``propertyDependencies``) go
through the same pulumi_policy objects the CLI would call, with the same config semantics
(``{"all": level, "<policy>": level | {"enforcementLevel": ..., <settings>}}``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from . import ALL_POLICIES, RULES_BY_NAME
from ._model import DISABLED, LEVELS


@dataclass(frozen=True)
class Violation:
    rule: str
    level: str
    resource_name: str
    message: str
    urn: str = ""
    control: str = ""


def _urn(res: Mapping[str, Any], stack: str = "test", project: str = "aidc") -> str:
    return res.get("urn") or f"urn:pulumi:{stack}::{project}::{res['type']}::{res['name']}"


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _level(config: Mapping[str, Any], name: str) -> str:
    """Per-policy level beats ``all``, which beats the rule's default (as in Pulumi policy config)."""
    level = RULES_BY_NAME[name].level
    for key in ("all", name):
        value = config.get(key)
        chosen = value.get("enforcementLevel") if isinstance(value, Mapping) else value
        if chosen is not None:
            if chosen not in LEVELS:
                raise ValueError(f"policy config {key!r}: enforcementLevel {chosen!r} is not one of {LEVELS}")
            level = chosen
    return level


def _settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if k != "enforcementLevel"}


def _policy_resources(resources: list[Mapping[str, Any]]) -> list[PolicyResource]:
    urns = [_urn(r) for r in resources]
    by_name = {r["name"]: u for r, u in zip(resources, urns, strict=True)}
    out = []
    for res, urn in zip(resources, urns, strict=True):
        props = dict(copy.deepcopy(res.get("props") or {}))
        if res.get("id") is not None:
            props.setdefault("id", res["id"])
        out.append(PolicyResource(res["type"], unknown_checking_proxy(props), urn, res["name"], _options(),
                                  None, None, [], {}))
    by_urn = {p.urn: p for p in out}
    for res, policy_resource in zip(resources, out, strict=True):
        for prop, deps in (res.get("propertyDependencies") or {}).items():
            targets = [by_urn.get(d) or by_urn.get(by_name.get(d, "")) for d in deps]
            policy_resource.property_dependencies[prop] = [t for t in targets if t is not None]
    return out


def _run(policy: Any, args: Any, report: Any) -> None:
    try:
        policy.validate(args, report)
    except UnknownValueError:  # the engine skips a policy that reads an unknown preview value
        pass


def evaluate(
    resources: Iterable[Mapping[str, Any]],
    config: Mapping[str, Any] | None = None,
    default_tags: Mapping[str, str] | None = None,
) -> list[Violation]:
    """Every violation every enabled policy reports over ``resources``.

    ``default_tags`` stands for the aws provider's ``defaultTags.tags``. A policy that reads a value
    unknown during preview is skipped for that resource, as the engine does.
    """
    config = dict(config or {})
    resources = list(resources)
    stack = _policy_resources(resources)
    provider = (PolicyProviderResource("pulumi:providers:aws", {"defaultTags": {"tags": dict(default_tags)}},
                                       "urn:pulumi:test::aidc::pulumi:providers:aws::default", "default")
                if default_tags else None)
    names = {p.urn: p.name for p in stack}
    found: list[Violation] = []
    for policy in ALL_POLICIES:
        level = _level(config, policy.name)
        if level == DISABLED:
            continue
        rule = RULES_BY_NAME[policy.name]
        settings = _settings(config, policy.name)

        def report(message: str, urn: str | None = None, *, _rule=rule, _level=level) -> None:
            found.append(Violation(_rule.name, _level, names.get(urn or "", ""), message, urn or "", _rule.control))

        if isinstance(policy, ResourceValidationPolicy):
            for res in stack:
                args = ResourceValidationArgs(res.resource_type, res.props, res.urn, res.name, res.opts,
                                              provider, settings)
                # A resource policy's report carries no URN: the resource validated is meant.
                _run(policy, args, lambda message, _urn=None, _res=res.urn, _report=report: _report(message, _res))
        else:
            _run(policy, StackValidationArgs(stack, settings), report)
    return found
