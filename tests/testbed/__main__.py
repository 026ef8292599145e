"""CLI: ``python -m tests.testbed up --hosts 2 --workdir DIR [--network bridge]`` / ``down --workdir DIR``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tests.testbed.bed import NETWORKS, Testbed, TestbedError, down, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="boot disposable hosts and write DIR/inventory.{ini,yml}")
    p_up.add_argument("--hosts", type=int, default=2, help="number of hosts (1-16, default 2)")
    p_up.add_argument("--workdir", type=Path, required=True, help="state, keys, overlays, inventory")
    p_up.add_argument("--bind-ro", action="append", default=[], metavar="SRC[:DST]",
                      help="read-only bind mount into every host (systemd-nspawn --bind-ro)")
    p_up.add_argument("--bind", action="append", default=[], metavar="SRC[:DST]",
                      help="read-write bind mount into every host, e.g. a directory all hosts share")
    p_up.add_argument("--network", choices=NETWORKS, default="veth",
                      help="veth: each host on its own link (default); bridge: all hosts on one "
                           "bridge, able to reach each other (multi-host training)")
    p_down = sub.add_parser("down", help="stop the hosts recorded in DIR/state.json and clean up")
    p_down.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "up":
        if not 1 <= args.hosts <= 16:
            parser.error(f"--hosts: {args.hosts} is not allowed; use 1 to 16")
        try:
            bed = up(args.workdir, args.hosts, args.bind_ro, network=args.network, binds_rw=args.bind)
        except TestbedError as exc:
            print(f"testbed up failed: {exc}", file=sys.stderr)
            return 1
        for host in bed.hosts:
            print(f"{host.name} {host.address}")
        print(f"inventory: {bed.inventory_ini} {bed.inventory_yml}")
        return 0
    state = args.workdir / "state.json"
    if not state.exists():
        print(f"testbed down: nothing recorded in {state}", file=sys.stderr)
        return 0
    down(Testbed.load(args.workdir.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
