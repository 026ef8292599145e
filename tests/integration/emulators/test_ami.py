"""(b) AMI resolution through SSM parameters, as tooling outside the Pulumi program does it.

Both emulators refuse writes under the reserved ``/aws/`` prefix (AccessDenied, as AWS does), so the
Deep Learning AMI parameter itself cannot be planted there. What is tested: the parameter name the
program reads for the example stacks is the DLAMI one; a missing DLAMI parameter gives a clear
error naming it; a user parameter (``nodePools[].ami.ssmParameter``) resolves; a public
``/aws/service/...`` parameter that the emulators ship resolves through the same call.
"""

from __future__ import annotations

import pytest

from infra.ami import AmiLookupError, resolve_ami
from infra.config import DEFAULT_AMI_PARAMETER, load_stack_config
from infra.offline import load_stack_yaml

pytestmark = pytest.mark.emulator

#: A public parameter both emulators serve from their bundled data (not the DLAMI one).
PUBLIC_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


@pytest.mark.parametrize("stack", ["dev", "p5", "inference"])
def test_example_stacks_read_the_dlami_parameter(stack):
    cfg = load_stack_config(
        {k.split(":", 1)[1]: v for k, v in load_stack_yaml(stack).items() if k.startswith("aidc:")},
        stack=stack,
    )
    assert {pool.ami.parameter for pool in cfg.cluster.node_pools} == {DEFAULT_AMI_PARAMETER}


def test_user_parameter_resolves(aws, unique):
    ssm = aws("ssm")
    name = f"/aidc/{unique}/gpu-ami"
    ssm.put_parameter(Name=name, Value="ami-0abc1234def567890", Type="String")
    try:
        assert resolve_ami(name, ssm) == "ami-0abc1234def567890"
    finally:
        ssm.delete_parameter(Name=name)


def test_missing_dlami_parameter_is_a_clear_error(aws):
    with pytest.raises(AmiLookupError) as err:
        resolve_ami(DEFAULT_AMI_PARAMETER, aws("ssm"))
    assert DEFAULT_AMI_PARAMETER in str(err.value) and "not found in us-east-1" in str(err.value)


def test_value_that_is_not_an_ami_id_is_rejected(aws, unique):
    ssm = aws("ssm")
    name = f"/aidc/{unique}/not-an-ami"
    ssm.put_parameter(Name=name, Value="latest", Type="String")
    try:
        with pytest.raises(AmiLookupError, match=r"holds 'latest', which is not an AMI id"):
            resolve_ami(name, ssm)
    finally:
        ssm.delete_parameter(Name=name)


def test_reserved_aws_prefix_cannot_be_planted(aws):
    ssm = aws("ssm")
    with pytest.raises(ssm.exceptions.ClientError, match="AccessDenied"):
        ssm.put_parameter(Name=DEFAULT_AMI_PARAMETER, Value="ami-0abc1234def567890", Type="String")


def test_public_service_parameter_resolves(aws):
    assert resolve_ami(PUBLIC_AMI_PARAMETER, aws("ssm")).startswith("ami-")
