"""End to end over the analyzer protocol: start the pack as the Pulumi CLI does and call it by gRPC.

The pack listens on 127.0.0.1 at a port it picks itself and prints it; the fixture stops it.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as pb
from pulumi.runtime.proto import analyzer_pb2_grpc

from policies import RULES

ROOT = Path(__file__).resolve().parents[3]


def _struct(values: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


@pytest.fixture
def analyzer():
    # Run the directory like the CLI's Python host does: policies/ is sys.path[0].
    proc = subprocess.Popen([sys.executable, "-u", "."], cwd=ROOT / "policies", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    channel = None
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=60), "policy pack printed no port within 60 s"
        line = proc.stdout.readline().strip()
        assert line.isdigit(), f"expected a port, got {line!r}; stderr: {proc.stderr.read() if proc.poll() else ''}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        if channel is not None:
            channel.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_pack_over_grpc(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "aidc-policies"
    assert {p.name for p in info.policies} == {r.name for r in RULES}

    analyzer.Configure(pb.ConfigureAnalyzerRequest(policyConfig={
        "instance-type-allowlist": pb.PolicyConfig(enforcementLevel=pb.MANDATORY,
                                                   properties=_struct({"allowedInstanceTypes": ["p4d.*"]})),
    }), timeout=30)
    props = {"instanceType": "p5.48xlarge", "metadataOptions": {"httpTokens": "optional"},
             "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true"}}],
             "tags": {"aidc:stack": "dev", "aidc:cluster": "c1"}}
    urn = "urn:pulumi:dev::aidc::aws:ec2/launchTemplate:LaunchTemplate::lt"
    reply = analyzer.Analyze(pb.AnalyzeRequest(type="aws:ec2/launchTemplate:LaunchTemplate", urn=urn, name="lt",
                                               properties=_struct(props)), timeout=30)
    levels = {d.policyName: d.enforcementLevel for d in reply.diagnostics}
    assert levels == {"ec2-imdsv2-required": pb.MANDATORY, "instance-type-allowlist": pb.MANDATORY}

    vpc_urn = "urn:pulumi:dev::aidc::aws:ec2/vpc:Vpc::vpc"
    stack = analyzer.AnalyzeStack(pb.AnalyzeStackRequest(resources=[pb.AnalyzerResource(
        type="aws:ec2/vpc:Vpc", urn=vpc_urn, name="vpc",
        properties=_struct({"cidrBlock": "10.0.0.0/16", "tags": {"aidc:stack": "dev", "aidc:cluster": "c1"}}))]),
        timeout=30)
    assert [(d.policyName, d.urn) for d in stack.diagnostics] == [("vpc-flow-logs", vpc_urn)]
