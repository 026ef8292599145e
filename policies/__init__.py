"""aidc CrossGuard policy pack: AWS FSBP controls and GPU-cluster validity rules.

``RULES`` holds the pure rules (validator functions over camelCase property dicts, reused by the
post-deploy audit); ``ALL_POLICIES`` wraps them as pulumi_policy objects. Importing this package
starts no server: only ``policies/__main__.py`` builds the ``PolicyPack``.
"""

from __future__ import annotations

from . import audit, capacity, ec2, eks, gpu, iam, kms, network, s3, storage, tags
from ._model import ADVISORY, MANDATORY, Rule, StackResource, StackViolation
from .pack import PolicyConfigError, build_policies, effective_config

RULES: list[Rule] = [
    *ec2.RULES,
    *network.RULES,
    *s3.RULES,
    *kms.RULES,
    *iam.RULES,
    *audit.RULES,
    *storage.RULES,
    *eks.RULES,
    *gpu.RULES,
    *capacity.RULES,
    *tags.RULES,
]
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
ALL_POLICIES = build_policies(RULES)

__all__ = [
    "ADVISORY",
    "ALL_POLICIES",
    "MANDATORY",
    "RULES",
    "RULES_BY_NAME",
    "PolicyConfigError",
    "Rule",
    "StackResource",
    "StackViolation",
    "effective_config",
]
