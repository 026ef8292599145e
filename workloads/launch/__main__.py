"""``python -m workloads.launch --name J --pool P --instance-type T --nodes IP,IP [--format F] -- ARGS``.

Prints what a job needs on the chosen path: ``torchrun`` (one command line per node),
``ansible`` (extra-vars JSON for ``ansible/train.yml``) or ``k8s`` (Service + Indexed Job YAML).
ARGS after ``--`` go to the training module.
"""

from __future__ import annotations

import argparse
import json
import sys

from workloads.launch.k8s import manifests, to_yaml
from workloads.launch.nccl import nccl_env_source
from workloads.launch.spec import JobSpec, LaunchError
from workloads.launch.torchrun import job_env, node_commands, rdzv_endpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workloads.launch", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="job name (DNS label)")
    p.add_argument("--pool", required=True, help="node pool (aidc:pool tag)")
    p.add_argument("--instance-type", required=True, help="catalog instance type, e.g. p5.48xlarge")
    p.add_argument("--nodes", default="", help="comma-separated private IPs, first = rendezvous host")
    p.add_argument("--nnodes", type=int, default=0, help="node count (k8s path; default: len(--nodes))")
    p.add_argument("--nproc-per-node", type=int, default=0, help="workers per node (default: GPUs per node)")
    p.add_argument("--rdzv-port", type=int, default=29500, help="c10d rendezvous port")
    p.add_argument("--max-restarts", type=int, default=3, help="torchrun --max-restarts")
    p.add_argument("--image", default="", help="container image (k8s)")
    p.add_argument("--namespace", default="default", help="namespace (k8s)")
    p.add_argument("--format", choices=("torchrun", "ansible", "k8s"), default="torchrun")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then arguments for workloads.train")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    train_args = tuple(a for a in ns.args if a != "--") if ns.args[:1] == ["--"] else tuple(ns.args)
    try:
        spec = JobSpec(
            name=ns.name,
            pool=ns.pool,
            instance_type=ns.instance_type,
            node_ips=tuple(ip for ip in ns.nodes.split(",") if ip),
            nnodes=ns.nnodes,
            nproc_per_node=ns.nproc_per_node,
            rdzv_port=ns.rdzv_port,
            max_restarts=ns.max_restarts,
            args=train_args,
            image=ns.image,
            namespace=ns.namespace,
        )
        if ns.format == "k8s":
            print(to_yaml(manifests(spec)), end="")
        elif ns.format == "ansible":
            print(
                json.dumps(
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
            )
        else:
            print(f"# NCCL env from {nccl_env_source()}")
            for ip, line in node_commands(spec).items():
                print(f"# node {ip}\n{line}")
    except (LaunchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
