"""Post-deploy audit: does a live stack still keep its promises?

    python -m infra.verify --stack dev [--endpoint-url http://localhost:4566] [--region us-east-1] [--json out.json]
    python -m infra.verify --all-resources ...   # every resource in the region, tagged or not

Finds the resources tagged ``aidc:stack=<stack>`` (instances, volumes, launch templates, security
groups, buckets, KMS keys, trails, FSx for Lustre), turns each into the camelCase property dict
Pulumi inputs use (:mod:`infra.verify_adapters`) and runs the policy pack's own rules on them
(``policies.runner.evaluate``): one definition of "encrypted", "IMDSv2", "open to the world" for
before and after deploy. Prints a table, optionally writes JSON.

Exit status: 0 no MANDATORY finding; 1 MANDATORY finding(s); 2 the audit could not run (endpoint
unreachable, no credentials, nothing tagged with the stack).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.verify_adapters import ADAPTERS, Resource

#: The pack's rules that judge what the adapters produce (rules about resources the audit does not
#: read, e.g. GPU layout or capacity, stay with the pre-deploy pack).
AUDIT_RULES = (
    "ec2-imdsv2-required",
    "ec2-block-devices-encrypted",
    "ebs-volume-encrypted",
    "sg-no-world-ingress",
    "s3-public-access-block",
    "s3-sse-kms",
    "s3-versioning",
    "s3-tls-only",
    "kms-key-rotation",
    "cloudtrail-multi-region",
    "cloudtrail-log-validation",
    "cloudtrail-kms",
    "fsx-lustre-cmk",
)
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})


#: Report name when the audit covers every resource in the region instead of one stack.
ALL_RESOURCES = "(all resources)"


class AuditError(Exception):
    """The audit could not run; the message is shown as is (exit status 2)."""


@dataclass
class Finding:
    rule: str
    level: str
    control: str
    message: str


@dataclass
class ResourceReport:
    type: str
    id: str
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Report:
    stack: str
    region: str
    endpoint: str | None
    resources: list[ResourceReport] = field(default_factory=list)
    #: service -> why it could not be inspected (e.g. an emulator without FSx)
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def mandatory(self) -> list[tuple[ResourceReport, Finding]]:
        return [(r, f) for r in self.resources for f in r.findings if f.level == "mandatory"]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = {
            "resources": len(self.resources),
            "mandatory": len(self.mandatory),
            "advisory": sum(f.level == "advisory" for r in self.resources for f in r.findings),
        }
        return data


def audit_config() -> dict[str, Any]:
    """Policy config that enables exactly :data:`AUDIT_RULES`, each at the pack's own level."""
    from policies import RULES_BY_NAME

    unknown = [name for name in AUDIT_RULES if name not in RULES_BY_NAME]
    if unknown:
        raise AuditError(f"the policy pack has no rule(s) {unknown}; known: {sorted(RULES_BY_NAME)}")
    return {"all": "disabled", **{name: {"enforcementLevel": RULES_BY_NAME[name].level} for name in AUDIT_RULES}}


def judge(resources: Sequence[Resource]) -> list[ResourceReport]:
    """Run the pack's rules over adapted resources; one report per resource, findings attached."""
    from policies.runner import evaluate

    reports = {r["name"]: ResourceReport(r["type"].rsplit(":", 1)[-1], r["id"]) for r in resources}
    for v in evaluate(resources, config=audit_config()):
        target = reports.get(v.resource_name)
        if target is None:  # a stack-level finding without a resource
            target = reports.setdefault("(stack)", ResourceReport("Stack", "(stack)"))
        target.findings.append(Finding(v.rule, v.level, v.control, v.message))
    return list(reports.values())


def _session_clients(region: str, endpoint: str | None):
    session = boto3.session.Session(region_name=region)

    def client(service: str):
        return session.client(service, endpoint_url=endpoint, config=_CLIENT_CONFIG)

    return client


def _where(endpoint: str | None, region: str) -> str:
    if endpoint:
        return f"{endpoint} ({region})"
    # boto3 also takes endpoints from AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>.
    overrides = sorted(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL"))
    return f"{region} (endpoints from {', '.join(overrides)})" if overrides else f"AWS {region}"


def collect(stack: str | None, region: str, endpoint: str | None) -> tuple[list[Resource], dict[str, str]]:
    """All stack resources the adapters find, and the services that could not be inspected."""
    client = _session_clients(region, endpoint)
    try:
        client("sts").get_caller_identity()
    except NoCredentialsError:
        raise AuditError(
            "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        ) from None
    except (BotoCoreError, ClientError) as exc:
        raise AuditError(f"cannot reach {_where(endpoint, region)}: {exc}") from None
    resources: list[Resource] = []
    unavailable: dict[str, str] = {}
    for service, adapter in ADAPTERS.items():
        try:
            resources += adapter(client(service), stack)
        except (BotoCoreError, ClientError) as exc:
            unavailable[service] = str(exc)
    return resources, unavailable


def run_audit(stack: str | None, region: str, endpoint: str | None = None) -> Report:
    """Audit one stack's resources, or (``stack=None``) every resource in the region."""
    resources, unavailable = collect(stack, region, endpoint)
    if not resources:
        what = f"resources tagged aidc:stack={stack!r}" if stack else "resources"
        hint = "check --stack, --region and --endpoint-url" if stack else "check --region and --endpoint-url"
        raise AuditError(f"no {what} found at {_where(endpoint, region)}; {hint}")
    return Report(stack or ALL_RESOURCES, region, endpoint, judge(resources), unavailable)


def print_report(report: Report, console: Console) -> None:
    table = Table(title=f"aidc audit of stack {report.stack!r} at {_where(report.endpoint, report.region)}")
    for column in ("resource", "id", "level", "rule", "finding"):
        table.add_column(column, overflow="fold")
    for res in sorted(report.resources, key=lambda r: (r.type, r.id)):
        if not res.findings:
            table.add_row(escape(res.type), escape(res.id), "[green]ok[/green]", "", "")
        for f in res.findings:
            color = "red" if f.level == "mandatory" else "yellow"
            table.add_row(escape(res.type), escape(res.id), f"[{color}]{f.level}[/{color}]", f.rule, escape(f.message))
    console.print(table)
    for service, why in sorted(report.unavailable.items()):
        console.print(f"[yellow]not inspected[/yellow] {service}: {escape(why)}")
    summary = report.to_json()["summary"]
    console.print(
        f"{summary['resources']} resources, {summary['mandatory']} mandatory and "
        f"{summary['advisory']} advisory findings"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.verify", description=__doc__.split("\n\n")[0])
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--stack", help="stack name (value of the aidc:stack tag)")
    scope.add_argument(
        "--all-resources",
        action="store_true",
        help="audit every resource in the region, tagged or not (account drift, resources made by hand)",
    )
    parser.add_argument(
        "--endpoint-url", type=_endpoint, help="AWS API endpoint, e.g. http://localhost:4566 for LocalStack"
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        help="region to inspect (default: AWS_REGION, AWS_DEFAULT_REGION or us-east-1)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON to FILE")
    return parser


def _endpoint(value: str) -> str:
    """An http(s) URL with a host, checked here so botocore never sees (and tracebacks on) a bad one."""
    url = urllib.parse.urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http(s) URL with a host, e.g. http://localhost:4566")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    try:
        report = run_audit(None if args.all_resources else args.stack, args.region, args.endpoint_url)
    except AuditError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    print_report(report, console)
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.mandatory else 0


def findings_by_resource(report: Report | Mapping[str, Any]) -> dict[str, set[str]]:
    """``{resource id: {rule, ...}}`` of a report (object or its JSON), for scripts and tests."""
    data = report.to_json() if isinstance(report, Report) else report
    return {r["id"]: {f["rule"] for f in r["findings"]} for r in data["resources"]}


if __name__ == "__main__":
    sys.exit(main())
