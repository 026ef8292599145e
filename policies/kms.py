"""KMS rules (FSBP KMS.4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._model import MANDATORY, Rule, get, truthy

KEY = "aws:kms/key:Key"


def key_rotation_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """KMS.4: symmetric encryption keys rotate automatically.

    AWS cannot rotate asymmetric, HMAC or external-key-store keys, so those are out of scope.
    """
    spec = get(props, "customerMasterKeySpec", default="SYMMETRIC_DEFAULT")
    usage = get(props, "keyUsage", default="ENCRYPT_DECRYPT")
    if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT" or get(props, "customKeyStoreId"):
        return []
    if truthy(get(props, "enableKeyRotation")):
        return []
    return ["KMS Key enableKeyRotation is not true: set enable_key_rotation=True."]


RULES = [
    Rule(
        name="kms-key-rotation",
        control="FSBP KMS.4",
        level=MANDATORY,
        description="Symmetric KMS keys have automatic rotation enabled.",
        remediation="aws.kms.Key(enable_key_rotation=True)",
        validator=key_rotation_violations,
        resource_types=(KEY,),
    ),
]
