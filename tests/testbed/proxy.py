"""apt-cacher-ng on the host side of the veths: the only way out of a test host's namespace.

It listens only on the veth host addresses (never on every interface), caches .debs across hosts
and runs (the cache lives next to the rootfs cache), and is stopped by the test bed's teardown.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

READY_TIMEOUT_S = 15.0


def free_port(address: str) -> int:
    """A random port that is free on ``address`` right now (never a fixed, well-known one).

    apt-cacher-ng 3.7 fails to bind ports >= 32768 ("Error resolving address for binding"), so
    the kernel's ephemeral range is out; try random ports below it instead.
    """
    for _ in range(50):
        port = random.randint(20000, 32767)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in 20000-32767 on {address}")


def start_proxy(workdir: Path, cache: Path, addresses: list[str]) -> tuple[subprocess.Popen, int]:
    """Start apt-cacher-ng bound to ``addresses``; return the process and its port once it answers."""
    conf = workdir / "acng"
    logs = workdir / "acng-log"
    for path in (conf, logs, cache):
        path.mkdir(parents=True, exist_ok=True)
    port = free_port(addresses[0])
    # No Remap-* lines: a plain caching proxy for the URLs apt asks for (deb.debian.org only here).
    (conf / "acng.conf").write_text(
        f"CacheDir: {cache}\nLogDir: {logs}\nSupportDir: /usr/lib/apt-cacher-ng\n"
        f"Port: {port}\nBindAddress: {' '.join(addresses)}\nForeGround: 1\n"
        "ExThreshold: 4\nDontCacheResolved: 0\n"
    )
    with open(logs / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            ["apt-cacher-ng", "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"apt-cacher-ng exited with {proc.returncode}; see {logs}/stdout.log")
        try:
            with socket.create_connection((addresses[0], port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"apt-cacher-ng did not listen on {addresses[0]}:{port} within {READY_TIMEOUT_S} s")


def apt_proxy_conf(address: str, port: int) -> str:
    return f'Acquire::http::Proxy "http://{address}:{port}/";\n'
