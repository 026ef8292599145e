"""``python -m workloads.launch --name J --pool P --instance-type T --nodes IP,IP [--format F] -- ARGS``.

Prints what a job needs on the chosen path: ``torchrun`` (one command line per node),
``ansible`` (extra-vars JSON for ``ansible/train.yml``) or ``k8s`` (Service + Indexed Job YAML).
ARGS after ``--`` go to the training module.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from workloads.launch.k8s import manifests, to_yaml
from workloads.launch.nccl import nccl_env_source
from workloads.launch.spec import JobSpec, LaunchError
from workloads.launch.torchrun import job_env, node_commands, rdzv_endpoint
from workloads.train.__main__ import parse_config
from workloads.train.config import ConfigError

#: JobSpec field -> the flag that sets it, so errors name what the user typed.
FLAGS = {
    "name": "--name",
    "pool": "--pool",
    "instance_type": "--instance-type",
    "node_ips": "--nodes",
    "nnodes": "--nnodes",
    "nproc_per_node": "--nproc-per-node",
    "rdzv_port": "--rdzv-port",
    "max_restarts": "--max-restarts",
    "image": "--image",
    "namespace": "--namespace",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workloads.launch", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="job name (DNS label)")
    p.add_argument("--pool", required=True, help="node pool (aidc:pool tag)")
    p.add_argument("--instance-type", required=True, help="catalog instance type, e.g. p5.48xlarge")
    p.add_argument("--nodes", default="", help="comma-separated private IPs, all different, first = rendezvous host")
    p.add_argument("--nnodes", type=int, default=0, help="node count (k8s path; default: len(--nodes))")
    p.add_argument(
        "--nproc-per-node", type=int, help="workers per node, at most the GPUs per node (default: GPUs per node)"
    )
    p.add_argument("--cpu", action="store_true", help="CPU (gloo) workers: request no GPUs; needs --nproc-per-node")
    p.add_argument("--rdzv-port", type=int, default=29500, help="c10d rendezvous port (default: %(default)s)")
    p.add_argument("--max-restarts", type=int, default=3, help="torchrun --max-restarts (default: %(default)s)")
    p.add_argument("--image", default="", help="container image (k8s)")
    p.add_argument("--namespace", default="default", help="namespace (k8s; default: %(default)s)")
    p.add_argument("--format", choices=("torchrun", "ansible", "k8s"), default="torchrun")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then arguments for workloads.train")
    return p


def cli_message(exc: LaunchError, ns: argparse.Namespace) -> str:
    """The error in the user's words: ``--nodes 10.0.0.1,10.0.0.1 is invalid: ...``."""
    flag = FLAGS.get(exc.field)
    if flag is None:
        return str(exc)
    typed = getattr(ns, flag[2:].replace("-", "_"))
    if typed is None:
        return f"{flag} is missing: {exc.allowed}"
    return f"{flag} {shlex.quote(str(typed))} is invalid: {exc.allowed}"


def check_train_args(spec: JobSpec) -> None:
    """Parse the arguments for the trainer as it will, so a bad one fails here, not on every node."""
    if spec.module == "workloads.train":
        parse_config(list(spec.args))  # raises ConfigError


def _ansible_vars(spec: JobSpec) -> str:
    return json.dumps(
        {
            "train_unit": spec.name,
            "train_nnodes": spec.node_count,
            "train_nproc_per_node": spec.procs_per_node,
            "train_rdzv_endpoint": rdzv_endpoint(spec),
            "train_max_restarts": spec.max_restarts,
            "train_module": spec.module,
            "train_args": list(spec.args),
            "train_env": job_env(spec),
        },
        indent=1,
    )


def render(spec: JobSpec, fmt: str) -> str:
    if fmt == "k8s":
        return to_yaml(manifests(spec))
    if fmt == "ansible":
        return _ansible_vars(spec) + "\n"
    lines = [f"# NCCL env from {nccl_env_source()}"]
    for ip, line in node_commands(spec).items():
        lines += [f"# node {ip}", line]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    # Only the leading separator goes: a "--" further on belongs to the training arguments.
    train_args = tuple(ns.args[1:]) if ns.args[:1] == ["--"] else tuple(ns.args)
    try:
        spec = JobSpec(
            name=ns.name,
            pool=ns.pool,
            instance_type=ns.instance_type,
            node_ips=tuple(ip for ip in ns.nodes.split(",") if ip),
            nnodes=ns.nnodes,
            nproc_per_node=ns.nproc_per_node,
            cpu=ns.cpu,
            rdzv_port=ns.rdzv_port,
            max_restarts=ns.max_restarts,
            args=train_args,
            image=ns.image,
            namespace=ns.namespace,
        )
        check_train_args(spec)
        text = render(spec, ns.format)
    except LaunchError as exc:
        print(f"error: {cli_message(exc, ns)}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: training arguments after --: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the nccl role's defaults file (nccl.py)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
