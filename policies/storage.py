"""Shared file systems encrypted with a customer managed key (FSx for Lustre, EFS: FSBP EFS.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._model import MANDATORY, Rule, get, truthy

LUSTRE = "aws:fsx/lustreFileSystem:LustreFileSystem"
EFS = "aws:efs/fileSystem:FileSystem"


def lustre_cmk_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """FSx for Lustre uses a CMK (``kmsKeyId``).

    SCRATCH deployments cannot take a CMK (AWS-managed key only), so they fail unless the
    ``allowScratch`` setting admits them (e.g. for throw-away dev stacks).
    """
    deployment = str(get(props, "deploymentType", default="SCRATCH_1"))
    if deployment.startswith("SCRATCH"):
        if (config or {}).get("allowScratch", False):
            return []
        return [f"LustreFileSystem deploymentType {deployment} cannot use a customer managed key: use "
                "PERSISTENT_2 with kmsKeyId, or set allowScratch in the policy config."]
    if get(props, "kmsKeyId"):
        return []
    return [f"LustreFileSystem ({deployment}) has no kmsKeyId: set kms_key_id to a customer managed key."]


def efs_cmk_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EFS.1: EFS is encrypted at rest, here with a customer managed key."""
    out = []
    if not truthy(get(props, "encrypted")):
        out.append("EFS FileSystem encrypted is not true: set encrypted=True.")
    if not get(props, "kmsKeyId"):
        out.append("EFS FileSystem has no kmsKeyId: set kms_key_id to a customer managed key.")
    return out


RULES = [
    Rule(name="fsx-lustre-cmk", control="FSx encryption at rest with CMK (NIST SC-28)", level=MANDATORY,
         description="FSx for Lustre file systems are encrypted with a customer managed KMS key.",
         remediation='aws.fsx.LustreFileSystem(deployment_type="PERSISTENT_2", kms_key_id=key.arn)',
         validator=lustre_cmk_violations, resource_types=(LUSTRE,),
         config={"allowScratch": {"type": "boolean", "default": False,
                                  "description": "Admit SCRATCH_* file systems (AWS-managed key)."}}),
    Rule(name="efs-cmk", control="FSBP EFS.1", level=MANDATORY,
         description="EFS file systems are encrypted with a customer managed KMS key.",
         remediation="aws.efs.FileSystem(encrypted=True, kms_key_id=key.arn)",
         validator=efs_cmk_violations, resource_types=(EFS,)),
]
