"""Evaluate the real Pulumi program offline, under Pulumi's mock runtime (no cloud calls).

Used by the offline plan (``python -m infra.plan``), the tests, the policy runner and the
benchmarks. Every invoke the program makes is answered here; an unknown invoke is an error, so a
new data-source call cannot slip through tests unmocked.
"""

from __future__ import annotations

import contextvars
import hashlib
import ipaddress
import json
import runpy
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from infra import catalog
from infra.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = REPO_ROOT / "infra" / "__main__.py"
MOCK_ACCOUNT_ID = "123456789012"
MOCK_AMI_PREFIX = "ami-0"


class UnmockedInvoke(RuntimeError):
    """The program called a data source the offline mocks do not answer (tests must mock it)."""


@dataclass
class RecordedResource:
    """One resource as the engine would see it: type token, logical name, camelCase inputs."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    urn: str
    parent: str | None
    custom: bool
    id: str = ""
    #: The ``ignore_changes`` resource option as the engine gets it (camelCase property names).
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def parent_type(self) -> str | None:
        """Type token of the parent component (from the URN's type chain)."""
        chain = self.urn.split("::")[2].split("$")
        return chain[-2] if len(chain) > 1 else None


@dataclass
class OfflineRun:
    """Everything one offline evaluation produced."""

    stack: str
    config: dict[str, Any]
    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    invokes: list[str] = field(default_factory=list)

    def of_type(self, token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == token]

    def engine_resources(self) -> list[dict[str, Any]]:
        """Custom resources in the shape policy runners take: type, name, urn, id and the properties
        the engine would hold after ``up`` (inputs plus what the provider computed: arn, name)."""
        return [
            {"type": r.type, "name": r.name, "urn": r.urn, "id": r.id, "props": dict(r.outputs)}
            for r in self.resources
            if r.custom
        ]

    def named(self, name: str) -> RecordedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


def stack_file(stack: str, project_dir: Path = REPO_ROOT) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def load_stack_yaml(stack: str, project_dir: Path = REPO_ROOT) -> dict[str, Any]:
    """The ``config:`` map of ``Pulumi.<stack>.yaml`` (keys like ``aidc:cluster``)."""
    path = stack_file(stack, project_dir)
    if not path.exists():
        known = sorted(p.name.split(".")[1] for p in project_dir.glob("Pulumi.*.yaml"))
        raise ConfigError(f"stack {stack!r}: {path.name} not found; known stacks: {', '.join(known)}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path.name}: not valid YAML{where}: {problem}") from None
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: 'config' must be a mapping")
    return config


def _stable_hex(*parts: str, n: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


class _Mocks:
    """Answers resource registrations and invokes like AWS would, deterministically."""

    def __init__(self, region: str, azs: Iterable[str], unavailable: Mapping[str, Iterable[str]],
                 root_devices: Mapping[str, str] | None = None):
        self.region = region
        self.azs = list(azs)
        self.unavailable = {az: set(types) for az, types in unavailable.items()}
        self.root_devices = dict(root_devices or {})
        self.invokes: list[str] = []
        self._ips = ipaddress.ip_network("10.255.0.0/16").hosts()
        self._ip_lock = threading.Lock()

    def next_ip(self) -> str:
        with self._ip_lock:
            return str(next(self._ips))

    # pulumi.runtime.Mocks interface -----------------------------------------------------------

    def call(self, args):
        self.invokes.append(args.token)
        handler = _INVOKES.get(args.token)
        if handler is None:
            raise UnmockedInvoke(f"offline mocks do not answer invoke {args.token!r}; add it to infra/offline.py")
        return handler(self, args.args)

    def new_resource(self, args):
        state = dict(args.inputs)
        token, name = args.typ, args.name
        prefix = _ID_PREFIXES.get(token, token.split(":")[-1].lower())
        rid = f"{prefix}-{_stable_hex(token, name)}"
        if token == "aws:s3/bucket:Bucket":  # a bucket's id is its name, as in AWS
            rid = args.inputs.get("bucket") or name
        service = token.split(":")[1].split("/")[0]
        state.setdefault("name", name)
        state.setdefault("arn", f"arn:aws:{service}:{self.region}:{MOCK_ACCOUNT_ID}:{name}")
        extra = _OUTPUTS.get(token)
        if extra:
            state.update(extra(self, name, args.inputs))
        return rid, state


def _offerings(mocks: _Mocks, args: dict) -> dict:
    filters = {f["name"]: set(f["values"]) for f in args.get("filters") or []}
    types = filters.get("instance-type", set(catalog.CATALOG))
    azs = filters.get("location", set(mocks.azs))
    pairs = sorted(
        (t, az)
        for t in types
        for az in azs
        if t in catalog.CATALOG and az.startswith(mocks.region) and t not in mocks.unavailable.get(az, set())
    )
    return {
        "id": mocks.region,
        "instanceTypes": [t for t, _ in pairs],
        "locations": [az for _, az in pairs],
        "locationTypes": ["availability-zone"] * len(pairs),
        "locationType": args.get("locationType"),
        "filters": args.get("filters"),
    }


_ID_PREFIXES = {
    "aws:ec2/instance:Instance": "i",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/placementGroup:PlacementGroup": "pg",
    "aws:fsx/lustreFileSystem:LustreFileSystem": "fs",
}

_INVOKES = {
    "aws:index/getCallerIdentity:getCallerIdentity": lambda m, a: {
        "accountId": MOCK_ACCOUNT_ID,
        "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/offline",
        "userId": "AIDAOFFLINE",
        "id": MOCK_ACCOUNT_ID,
    },
    "aws:index/getPartition:getPartition": lambda m, a: {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
        "id": "aws",
    },
    "aws:index/getRegion:getRegion": lambda m, a: {"name": m.region, "region": m.region, "id": m.region},
    "aws:index/getAvailabilityZones:getAvailabilityZones": lambda m, a: {
        "names": [f"{m.region}{s}" for s in "abcdef"],
        "zoneIds": [f"use1-az{i}" for i in range(1, 7)],
        "id": m.region,
    },
    "aws:ssm/getParameter:getParameter": lambda m, a: {
        "name": a["name"],
        "value": MOCK_AMI_PREFIX + _stable_hex(a["name"], n=16),
        "insecureValue": MOCK_AMI_PREFIX + _stable_hex(a["name"], n=16),
        "type": "String",
        "version": 1,
        "arn": f"arn:aws:ssm:{m.region}::parameter{a['name']}",
        "id": a["name"],
        "withDecryption": True,
    },
    "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": _offerings,
    "aws:ec2/getAmi:getAmi": lambda m, a: _ami(m, a),
}


def _ami(mocks: _Mocks, args: dict) -> dict:
    filters = {f["name"]: list(f["values"]) for f in args.get("filters") or []}
    (image_id,) = filters["image-id"]
    return {
        "id": image_id,
        "imageId": image_id,
        "rootDeviceName": mocks.root_devices.get(image_id, "/dev/sda1"),
        "rootDeviceType": "ebs",
        "architecture": "x86_64",
        "filters": args.get("filters"),
    }

_OUTPUTS = {
    "aws:s3/bucket:Bucket": lambda m, n, i: {
        "bucket": i.get("bucket") or n,
        "arn": f"arn:aws:s3:::{i.get('bucket') or n}",
    },
    "aws:kms/key:Key": lambda m, n, i: {
        "keyId": _uuid(n),
        "arn": f"arn:aws:kms:{m.region}:{MOCK_ACCOUNT_ID}:key/{_uuid(n)}",
    },
    "aws:ec2/instance:Instance": lambda m, n, i: {
        "privateIp": m.next_ip(),
        "arn": f"arn:aws:ec2:{m.region}:{MOCK_ACCOUNT_ID}:instance/i-{_stable_hex(n)}",
    },
    "aws:iam/role:Role": lambda m, n, i: {"arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/{i.get('name') or n}"},
    "aws:iam/instanceProfile:InstanceProfile": lambda m, n, i: {
        "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:instance-profile/{i.get('name') or n}"
    },
    "aws:cloudtrail/trail:Trail": lambda m, n, i: {
        "arn": f"arn:aws:cloudtrail:{m.region}:{MOCK_ACCOUNT_ID}:trail/{i.get('name') or n}"
    },
    "aws:cloudwatch/logGroup:LogGroup": lambda m, n, i: {
        "arn": f"arn:aws:logs:{m.region}:{MOCK_ACCOUNT_ID}:log-group:{i.get('name') or n}"
    },
    "aws:fsx/lustreFileSystem:LustreFileSystem": lambda m, n, i: {
        "dnsName": f"fs-{_stable_hex(n)}.fsx.{m.region}.amazonaws.com",
        "mountName": _stable_hex(n, "mount", n=8),
    },
    "aws:ec2/launchTemplate:LaunchTemplate": lambda m, n, i: {"latestVersion": 1, "defaultVersion": 1},
}


def _uuid(name: str) -> str:
    h = _stable_hex(name, n=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _pulumi_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Pulumi keeps config values as strings; objects and lists as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_stack(
    stack: str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    stack_name: str | None = None,
    unavailable: Mapping[str, Iterable[str]] | None = None,
    root_devices: Mapping[str, str] | None = None,
    project_dir: Path = REPO_ROOT,
) -> OfflineRun:
    """Evaluate ``infra/__main__.py`` for a stack file (``stack``) or an explicit ``config`` map.

    ``unavailable`` maps an AZ to instance types the mocked offerings invoke leaves out (to test
    the offering check). ``root_devices`` maps an AMI id to the root device name the mocked AMI
    lookup reports (default ``/dev/sda1``, as Ubuntu AMIs and the DLAMI have). Raises
    :class:`ConfigError` for config mistakes, like ``pulumi up`` would.
    """
    if config is None:
        if stack is None:
            raise ValueError("run_stack needs a stack name or a config map")
        config = load_stack_yaml(stack, project_dir)
    name = stack_name or stack or "offline"
    # Each run gets fresh context variables (Pulumi keeps its root stack and config in them).
    return contextvars.copy_context().run(_run, name, dict(config), unavailable or {}, root_devices or {})


def _run(stack: str, config: dict[str, Any], unavailable: Mapping[str, Iterable[str]],
         root_devices: Mapping[str, str]) -> OfflineRun:
    import pulumi
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings as psettings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    region = str(config.get("aws:region") or "us-east-1")
    cluster = config.get("aidc:cluster")
    azs = cluster.get("availabilityZones", []) if isinstance(cluster, dict) else []
    mocks = _Mocks(region, azs, unavailable, root_devices)
    monitor = _RecordingMonitor(mocks)
    psettings.ROOT.set(None)
    pulumi.runtime.set_all_config(_pulumi_config(config))
    pmocks.set_mocks(mocks, project="aidc", stack=stack, preview=False, monitor=monitor)
    psettings.SETTINGS.rpc_manager.clear()
    psettings.SETTINGS.outputs.clear()
    result = OfflineRun(stack=stack, config=config)

    async def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        root = psettings.get_root_resource()
        for key, value in dict(root.outputs).items():
            result.outputs[key] = await pulumi.Output.from_input(value).future()

    try:
        _sync_await(run_pulumi_func(program))
    except pulumi.RunError as exc:
        raise ConfigError(str(exc)) from None
    result.resources = monitor.recorded
    result.invokes = mocks.invokes
    return result


class _RecordingMonitor(MockMonitor):
    """Keeps every registration with its inputs and parent URN (the stock monitor drops both)."""

    def __init__(self, mocks: _Mocks):
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recorded.append(
                RecordedResource(
                    type=request.type,
                    name=request.name,
                    # Registrations run on executor threads: decode this request's own inputs.
                    inputs=dict(rpc.deserialize_properties(request.object)),
                    outputs=dict(self.resources[response.urn].state),
                    urn=response.urn,
                    parent=request.parent or None,
                    custom=bool(request.custom),
                    id=self.resources[response.urn].id,
                    ignore_changes=list(request.ignoreChanges),
                )
            )
        return response
