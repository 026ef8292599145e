"""Turn the pure rules into pulumi_policy objects (no server starts here: see ``__main__.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._model import Rule, StackResource


class PolicyConfigError(ValueError):
    """A policy-config value that does not match the rule's schema (names rule, key, value, allowed)."""


_JSON_TYPES = {"boolean": bool, "integer": int, "string": str, "number": (int, float)}


def _check(rule: Rule, key: str, value: Any, schema: Mapping[str, Any]) -> None:
    kind = schema.get("type")
    if kind == "array":
        item_type = _JSON_TYPES.get(schema.get("items", {}).get("type", ""), object)
        if not isinstance(value, list) or not all(
            isinstance(v, item_type) and not (item_type is int and isinstance(v, bool)) for v in value
        ):
            raise PolicyConfigError(f"policy {rule.name}: config key {key!r} must be a list of "
                                    f"{schema.get('items', {}).get('type', 'values')}s, got {value!r}")
    elif kind in _JSON_TYPES and (not isinstance(value, _JSON_TYPES[kind])
                                  or (kind != "boolean" and isinstance(value, bool))):
        raise PolicyConfigError(f"policy {rule.name}: config key {key!r} must be a {kind}, got {value!r}")


def effective_config(rule: Rule, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The rule's defaults overlaid with the configured values, checked against its schema."""
    config = rule.defaults()
    for key, value in dict(given or {}).items():
        if key == "enforcementLevel":
            continue
        if key not in rule.config:
            allowed = ", ".join(sorted(rule.config)) or "none (only enforcementLevel)"
            raise PolicyConfigError(f"policy {rule.name}: unknown config key {key!r}; allowed keys: {allowed}")
        _check(rule, key, value, rule.config[key])
        config[key] = value
    return config


def provider_default_tags(provider: Any) -> dict[str, Any]:
    """``defaultTags.tags`` of the aws provider (object-typed provider inputs arrive as JSON text)."""
    props = getattr(provider, "props", None) or {}
    default_tags = props.get("defaultTags") if isinstance(props, Mapping) else None
    if isinstance(default_tags, str):
        try:
            default_tags = json.loads(default_tags)
        except ValueError:
            return {}
    tags = default_tags.get("tags") if isinstance(default_tags, Mapping) else None
    return dict(tags) if isinstance(tags, Mapping) else {}


def _resource_validate(rule: Rule):
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if args.resource_type not in rule.resource_types:
            return
        config = effective_config(rule, args.get_config())
        extra = {"default_tags": provider_default_tags(args.provider)} if rule.wants_provider_tags else {}
        for message in rule.validator(args.resource_type, args.props, config, **extra):
            report_violation(message, None)

    return validate


def stack_resources(args: StackValidationArgs) -> list[StackResource]:
    """The engine's PolicyResources as the rules' StackResources (dependencies as URNs)."""
    return [
        StackResource(
            type=r.resource_type,
            name=r.name,
            urn=r.urn,
            props=r.props,
            deps={k: [d.urn for d in v] for k, v in (r.property_dependencies or {}).items()},
        )
        for r in args.resources
    ]


def _stack_validate(rule: Rule):
    def validate(args: StackValidationArgs, report_violation) -> None:
        config = effective_config(rule, args.get_config())
        for violation in rule.validator(stack_resources(args), config):
            report_violation(violation.message, violation.urn or None)

    return validate


def build_policy(rule: Rule) -> ResourceValidationPolicy | StackValidationPolicy:
    common: dict[str, Any] = {
        "name": rule.name,
        "description": f"{rule.description} [{rule.control}]",
        "enforcement_level": EnforcementLevel(rule.level),
        "config_schema": PolicyConfigSchema(properties={k: dict(v) for k, v in rule.config.items()})
        if rule.config else None,
        "remediation_steps": rule.remediation,
    }
    if rule.kind == "stack":
        return StackValidationPolicy(validate=_stack_validate(rule), **common)
    return ResourceValidationPolicy(validate=_resource_validate(rule), **common)


def build_policies(rules: list[Rule]) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate policy names: {duplicates}")
    return [build_policy(rule) for rule in rules]
