"""Rule registry types and small helpers shared by every rule module (no pulumi_policy objects here).

Validators read resource properties exactly as the Pulumi engine sends them: camelCase keys from the
pulumi-aws schema, nested objects as mappings, lists as sequences. They accept plain dicts (from
mocks or from boto3 describe results translated by an audit) as well as pulumi_policy's
unknown-checking proxies (which raise ``UnknownValueError`` on values unknown during preview).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

try:  # Unknown preview values raise this when read through pulumi_policy's proxies.
    from pulumi_policy.proxy import UnknownValueError
except ImportError:  # pragma: no cover - validators stay usable without pulumi_policy

    class UnknownValueError(Exception):  # type: ignore[no-redef]
        """Stand-in so ``except UnknownValueError`` works without pulumi_policy installed."""


MANDATORY = "mandatory"
ADVISORY = "advisory"
DISABLED = "disabled"
LEVELS = (ADVISORY, MANDATORY, DISABLED)

WORLD_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
#: Narrowest prefix still treated as "the world": ::/1 or 0.0.0.0/1 open as much as /0 in practice.
#: Same bounds as infra.config's sshCidrs check (an IPv6 /32 is a whole ISP's allocation).
WORLD_SCALE_PREFIX = {4: 8, 6: 32}


def is_world_scale(cidr: Any) -> bool:
    """True for 0.0.0.0/0, ::/0 and any range broader than /8 (IPv4) or /32 (IPv6)."""
    if cidr in WORLD_CIDRS:
        return True
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False
    return net.prefixlen < WORLD_SCALE_PREFIX[net.version]


@dataclass(frozen=True)
class StackResource:
    """One resource of a stack, as a stack rule sees it.

    ``deps`` maps a top-level property name to the URNs that property depends on (the engine's
    ``propertyDependencies``): during preview, references such as a launch template's
    ``vpcSecurityGroupIds`` are unknown, and the dependency graph is the only link left.
    """

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    id: str | None = None
    deps: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StackViolation:
    """A stack rule's finding: which resource (by URN and name; both empty for the stack) and why."""

    urn: str
    name: str
    message: str


ResourceValidator = Callable[..., list[str]]
StackValidator = Callable[..., list[StackViolation]]


@dataclass(frozen=True)
class Rule:
    """One policy: a pure validator plus the metadata the pack, the README and the audit share.

    ``config`` is the JSON schema of the rule's settings (``default`` given for each); validators
    receive the merged settings as their ``config`` argument. ``resource_types`` is empty for stack
    rules (``kind == "stack"``), which see every resource of the stack at once.
    """

    name: str
    control: str
    level: str
    description: str
    remediation: str
    validator: Callable[..., Any]
    resource_types: tuple[str, ...] = ()
    kind: str = "resource"
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    wants_provider_tags: bool = False

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.config.items() if "default" in v}


# ----------------------------------------------------------------------------- value helpers


def get(obj: Any, *path: str | int, default: Any = None) -> Any:
    """Nested lookup that tolerates missing keys, ``None`` and wrong shapes along the way."""
    cur = obj
    for key in path:
        if isinstance(key, int):
            if not is_seq(cur) or key >= len(cur):
                return default
            cur = cur[key]
        else:
            if not isinstance(cur, Mapping) or key not in cur:
                return default
            cur = cur[key]
        if cur is None:
            return default
    return cur


def is_seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def as_list(value: Any) -> list[Any]:
    """A property that may be absent, a single object or a list, as a list."""
    if value is None:
        return []
    if is_seq(value):
        return list(value)
    return [value]


def truthy(value: Any) -> bool:
    """True for ``True`` and for the string ``"true"`` (launch-template EBS flags are strings)."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"


def falsy_explicit(value: Any) -> bool:
    """True only for an explicit ``False`` / ``"false"`` (absent stays undecided)."""
    if isinstance(value, bool):
        return not value
    return isinstance(value, str) and value.strip().lower() == "false"


def policy_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM/bucket policy given as a JSON string or an already-parsed mapping; None if invalid."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except ValueError:
            return None
        return doc if isinstance(doc, Mapping) else None
    return None


def statements(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, Mapping)]


def short(resource_type: str) -> str:
    """``aws:ec2/launchTemplate:LaunchTemplate`` -> ``LaunchTemplate`` for messages."""
    return resource_type.rsplit(":", 1)[-1]


# ----------------------------------------------------------------------------- stack references


class StackIndex:
    """Finds the resources a property refers to, by value (id/name/arn) or by dependency."""

    def __init__(self, resources: Sequence[StackResource]):
        self.resources = list(resources)
        self.by_urn = {r.urn: r for r in self.resources}
        self._by_value: dict[str, list[StackResource]] = {}
        for r in self.resources:
            for key in self._identities(r):
                self._by_value.setdefault(key, []).append(r)

    @staticmethod
    def _identities(r: StackResource) -> list[str]:
        keys = [r.id] if r.id else []
        for prop in ("id", "arn", "name", "bucket"):
            try:
                value = r.props.get(prop)
            except UnknownValueError:
                continue
            if isinstance(value, str) and value:
                keys.append(value)
        return keys

    def of_type(self, *types: str) -> list[StackResource]:
        return [r for r in self.resources if r.type in types]

    def resolve(self, owner: StackResource, prop: str, value: Any, types: Sequence[str]) -> list[StackResource]:
        """Resources of ``types`` that ``owner``'s top-level ``prop`` (holding ``value``) points at.

        A known string value is matched against ids, names, ARNs and bucket names; when that finds
        nothing (unknown in preview, or an id the recording did not keep) the engine's property
        dependencies are used. An empty result means the target lives outside this stack.
        """
        if isinstance(value, str) and value:
            found = [r for r in self._by_value.get(value, []) if r.type in types]
            if found:
                return found
            arn_tail = value.rsplit("/", 1)[-1] if value.startswith("arn:") else None
            if arn_tail:
                found = [r for r in self._by_value.get(arn_tail, []) if r.type in types]
                if found:
                    return found
        return [self.by_urn[u] for u in owner.deps.get(prop, ()) if u in self.by_urn and self.by_urn[u].type in types]


def read(obj: Any, *path: str | int) -> tuple[Any, bool]:
    """(value, unknown): ``get`` that reports a value unknown during preview instead of raising."""
    try:
        return get(obj, *path), False
    except UnknownValueError:
        return None, True


def read_list(obj: Any, *path: str | int) -> tuple[list[Any], bool]:
    """(items, unknown) of a list property; unknown items are dropped and flagged."""
    value, unknown = read(obj, *path)
    if value is None:
        return [], unknown
    if not is_seq(value):
        return [value], unknown
    items = []
    for i in range(len(value)):
        item, item_unknown = read(value, i)
        unknown = unknown or item_unknown
        if item is not None:
            items.append(item)
    return items, unknown


def safe(read: Callable[[], Any]) -> Any:
    """Run a property read; an unknown preview value reads as None (for reference values only)."""
    try:
        return read()
    except UnknownValueError:
        return None
