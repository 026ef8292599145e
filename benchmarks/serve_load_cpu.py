"""Overload test on CPU against the real server: only 200 and 429 may come back, memory stays bounded.

    python benchmarks/serve_load_cpu.py [--duration 20] [--overload 4] [--out serve_load_cpu.json]

Starts ``python -m workloads.serve`` (tiny random model) on a free loopback port with
``--max-batch`` slots and a ``--queue-size`` admission queue, then keeps ``overload x (slots +
queue)`` clients sending completions back to back for ``--duration`` seconds. Counts status
codes, checks every 200 carries its full completion, and records the server's RSS before, at
the end of each third of the run, and after. Prints a table, writes JSON, exits 1 if any status
other than 200/429 (or a transport error) was seen or the server died.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, slots: int, queue: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "workloads.serve",
        "--model",
        "tiny-random",
        "--port",
        str(port),
        "--max-batch",
        str(slots),
        "--queue-size",
        str(queue),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy within 120 s")


async def client(http: httpx.AsyncClient, url: str, body: dict, stop_at: float, counts: collections.Counter) -> None:
    while time.monotonic() < stop_at:
        try:
            r = await http.post(url, json=body)
        except httpx.TransportError as exc:
            counts[f"transport:{type(exc).__name__}"] += 1
            continue
        counts[str(r.status_code)] += 1
        if r.status_code == 200 and r.json()["usage"]["completion_tokens"] != body["max_tokens"]:
            counts["200-incomplete"] += 1
        elif r.status_code == 429:
            if "retry-after" not in r.headers:
                counts["429-without-retry-after"] += 1
            await asyncio.sleep(0.05)  # a polite client backs off a little (not the full Retry-After)


async def load(port: int, pid: int, clients: int, duration: float, max_tokens: int) -> tuple[dict, list]:
    url = f"http://127.0.0.1:{port}/v1/completions"
    body = {"model": "tiny-random", "prompt": "load test", "max_tokens": max_tokens, "ignore_eos": True}
    counts: collections.Counter = collections.Counter()
    stop_at = time.monotonic() + duration
    samples = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        tasks = [asyncio.create_task(client(http, url, body, stop_at, counts)) for _ in range(clients)]
        for i in range(1, 4):
            await asyncio.sleep(max(0.0, stop_at - duration * (1 - i / 3) - time.monotonic()))
            samples.append(round(rss_mib(pid), 1))
        await asyncio.gather(*tasks)
    return dict(counts), samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--slots", type=int, default=4, help="server --max-batch")
    p.add_argument("--queue", type=int, default=8, help="server --queue-size")
    p.add_argument("--overload", type=int, default=4, help="clients = overload x (slots + queue)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--out", default="serve_load_cpu.json")
    a = p.parse_args(argv)
    port, clients = free_port(), a.overload * (a.slots + a.queue)
    proc = start_server(port, a.slots, a.queue)
    try:
        before = round(rss_mib(proc.pid), 1)
        t0 = time.monotonic()
        counts, during = asyncio.run(load(port, proc.pid, clients, a.duration, a.max_tokens))
        wall = time.monotonic() - t0
        alive = proc.poll() is None
        healthy = alive and httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        after = round(rss_mib(proc.pid), 1) if alive else None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    bad = {k: v for k, v in counts.items() if k not in ("200", "429")}
    result = {
        "clients": clients,
        "slots": a.slots,
        "queue": a.queue,
        "duration_s": round(wall, 1),
        "status_counts": counts,
        "unexpected": bad,
        "ok_per_s": round(counts.get("200", 0) / wall, 1),
        "rss_mib": {"before": before, "during": during, "after": after},
        "server_alive_after_load": healthy,
        "server_exit_code_on_sigterm": code,
    }
    print(f"{'clients':>8}{'200':>8}{'429':>8}{'other':>8}{'200/s':>8}{'RSS before':>12}{'RSS after':>11}")
    print(
        f"{clients:>8}{counts.get('200', 0):>8}{counts.get('429', 0):>8}{sum(bad.values()):>8}"
        f"{result['ok_per_s']:>8}{before:>12}{after!s:>11}"
    )
    print(f"RSS during (MiB): {during}; server healthy after load: {healthy}; exit code on SIGTERM: {code}")
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")
    return 0 if not bad and healthy and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
