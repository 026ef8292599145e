"""Resolve an AMI id from an SSM public parameter, the way tooling outside the Pulumi program does.

The program reads the same parameter at deploy time (``infra.program.resolve_ami`` →
``aws.ssm.get_parameter``); this helper serves scripts and the post-deploy audit, which talk to
AWS (or an emulator) through boto3. The default parameter is the Deep Learning Base AMI
(``infra.config.DEFAULT_AMI_PARAMETER``).
"""

from __future__ import annotations

import re
from typing import Any

from infra.config import DEFAULT_AMI_PARAMETER

AMI_ID_RE = re.compile(r"ami-[0-9a-f]{8,17}")


class AmiLookupError(LookupError):
    """The parameter is missing or does not hold an AMI id; the message names the parameter."""


def resolve_ami(parameter_name: str, ssm_client: Any) -> str:
    """The AMI id stored in SSM parameter ``parameter_name`` (read with ``ssm_client.get_parameter``).

    Raises :class:`AmiLookupError` when the parameter does not exist in the client's region or
    its value is not an AMI id (``ami-`` followed by 8-17 hex digits).
    """
    region = getattr(getattr(ssm_client, "meta", None), "region_name", None) or "the client's region"
    try:
        response = ssm_client.get_parameter(Name=parameter_name)
    except ssm_client.exceptions.ParameterNotFound:
        raise AmiLookupError(
            f"SSM parameter {parameter_name!r} not found in {region}; for the Deep Learning AMI use "
            f"{DEFAULT_AMI_PARAMETER!r} (format /aws/service/deeplearning/ami/<arch>/<ami-type>/latest/ami-id) "
            "or set nodePools[].ami.id"
        ) from None
    value = str(response.get("Parameter", {}).get("Value", "")).strip()
    if not AMI_ID_RE.fullmatch(value):
        raise AmiLookupError(
            f"SSM parameter {parameter_name!r} in {region} holds {value!r}, which is not an AMI id (ami-xxxxxxxx)"
        )
    return value
