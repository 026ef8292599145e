"""Tag keys shared by the Pulumi program, the Ansible inventory, policies and the audit.

Ansible's aws_ec2 inventory builds its groups from these keys (``keyed_groups``), so renaming one
is a contract change: change ``ansible/inventory/aws_ec2.yml`` in the same commit.
"""

from __future__ import annotations

from collections.abc import Mapping

TAG_STACK = "aidc:stack"
TAG_CLUSTER = "aidc:cluster"
TAG_POOL = "aidc:pool"
TAG_ROLE = "aidc:role"
TAG_NAME = "Name"

#: Tags every taggable resource must carry (checked by tests and by the ADVISORY tag policy).
REQUIRED_TAG_KEYS: tuple[str, ...] = (TAG_STACK, TAG_CLUSTER)

#: Node-pool roles understood by the inventory groups and the launchers.
ROLES: tuple[str, ...] = ("train", "infer", "head")

#: Prefixes users may not use in their own tags: AWS reserves ``aws:``; ``aidc:`` is ours.
RESERVED_TAG_PREFIXES: tuple[str, ...] = ("aws:", "aidc:")


def base_tags(stack: str, cluster: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags for every resource of a stack: the user's extra tags first, ours win on conflict."""
    tags = dict(extra or {})
    tags[TAG_STACK] = stack
    tags[TAG_CLUSTER] = cluster
    return tags


def pool_tags(base: Mapping[str, str], pool: str, role: str) -> dict[str, str]:
    """Tags for resources that belong to one node pool (instances, volumes, NICs, templates)."""
    return {**base, TAG_POOL: pool, TAG_ROLE: role}
