"""Audit-trail rules: CloudTrail and log-group encryption (FSBP CloudTrail.1/2/4, AWS Config rule)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._model import MANDATORY, Rule, get, truthy

TRAIL = "aws:cloudtrail/trail:Trail"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def trail_multi_region_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """CloudTrail.1: the trail records every region (``isMultiRegionTrail``), logging switched on."""
    out = []
    if not truthy(get(props, "isMultiRegionTrail")):
        out.append("Trail isMultiRegionTrail is not true: activity in other regions would go unrecorded.")
    if get(props, "enableLogging") is False:
        out.append("Trail enableLogging is false: the trail records nothing.")
    return out


def trail_validation_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """CloudTrail.4: log file integrity validation is enabled."""
    if truthy(get(props, "enableLogFileValidation")):
        return []
    return ["Trail enableLogFileValidation is not true: tampering with log files would go unnoticed."]


def trail_kms_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """CloudTrail.2: trail logs are encrypted with a KMS key (SSE-KMS)."""
    if get(props, "kmsKeyId"):
        return []
    return ["Trail kmsKeyId is not set: encrypt the trail with a customer managed KMS key."]


def log_group_kms_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """CloudWatch log groups are encrypted with a KMS key (AWS Config cloudwatch-log-group-encrypted)."""
    if get(props, "kmsKeyId"):
        return []
    return ["LogGroup kmsKeyId is not set: encrypt the log group with a KMS key (the key policy must "
            "allow logs.<region>.amazonaws.com)."]


RULES = [
    Rule(name="cloudtrail-multi-region", control="FSBP CloudTrail.1", level=MANDATORY,
         description="CloudTrail trails are multi-region and logging.",
         remediation="aws.cloudtrail.Trail(is_multi_region_trail=True, enable_logging=True)",
         validator=trail_multi_region_violations, resource_types=(TRAIL,)),
    Rule(name="cloudtrail-log-validation", control="FSBP CloudTrail.4", level=MANDATORY,
         description="CloudTrail log file validation is enabled.",
         remediation="aws.cloudtrail.Trail(enable_log_file_validation=True)",
         validator=trail_validation_violations, resource_types=(TRAIL,)),
    Rule(name="cloudtrail-kms", control="FSBP CloudTrail.2", level=MANDATORY,
         description="CloudTrail logs are encrypted with a KMS key.",
         remediation="aws.cloudtrail.Trail(kms_key_id=key.arn) with a key policy allowing cloudtrail.amazonaws.com",
         validator=trail_kms_violations, resource_types=(TRAIL,)),
    Rule(name="log-group-kms", control="AWS Config cloudwatch-log-group-encrypted", level=MANDATORY,
         description="CloudWatch log groups are encrypted with a KMS key.",
         remediation="aws.cloudwatch.LogGroup(kms_key_id=key.arn)",
         validator=log_group_kms_violations, resource_types=(LOG_GROUP,)),
]
