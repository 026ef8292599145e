"""The program's declared resources for an example stack, from one offline (mock) run per stack.

Tests take tags, launch-template data and policy documents from here, never retyped. Values are
read from each record's ``outputs`` (the mock's state for that URN: the inputs the program sent
plus computed ids/ARNs): ``RecordedResource.inputs`` can belong to a neighbouring registration when
the mock monitor handles two at once (reported to the lead), ``outputs`` cannot.
"""

from __future__ import annotations

import functools
from typing import Any

from infra.offline import OfflineRun, RecordedResource, run_stack

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE = "aws:iam/role:Role"


@functools.cache
def _cached(stack: str, stack_name: str) -> OfflineRun:
    return run_stack(stack, stack_name=stack_name)


def offline_run(stack: str, stack_name: str | None = None) -> OfflineRun:
    """``run_stack(stack)`` once per (stack, stack name); ``stack_name`` sets the ``aidc:stack`` tag."""
    return _cached(stack, stack_name or stack)


def declared(resource: RecordedResource) -> dict[str, Any]:
    """What the program declared for ``resource`` (camelCase, like Pulumi inputs)."""
    return dict(resource.outputs)
