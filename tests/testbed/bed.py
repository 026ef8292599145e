"""Boot N disposable Debian 12 hosts (systemd-nspawn + overlayfs + veth) and tear them down.

Two network layouts:

- ``veth`` (default): each host on its own /30 veth link to this machine. Hosts reach this machine
  (the apt proxy) but not each other: routing between links would need ip_forward, which the test
  machine's sysctls are not ours to change.
- ``bridge``: every host's veth joins one Linux bridge created for the bed, all in one /24 with the
  bridge's address as gateway and apt proxy; hosts talk to each other at layer 2 (multi-host
  training), still without ip_forward. Every host's /etc/hosts names all hosts, as a cluster's DNS
  would (torchrun and gloo resolve peers by host name).

Every wait is bounded; every process, mount and link the bed creates is recorded in
``WORKDIR/state.json`` as soon as it exists, so that ``down`` (from a finally block, a signal
handler or another process) removes exactly what ``up`` created, even after a partial start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.testbed import rootfs
from tests.testbed.inventory import write_inventories
from tests.testbed.proxy import apt_proxy_conf, start_proxy

BOOT_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 25.0


class TestbedError(RuntimeError):
    """The bed could not start; the message says which step and where the logs are."""

    __test__ = False  # not a pytest test class despite the name


@dataclass
class Host:
    name: str
    address: str  # inside the host (host0)
    gateway: str  # host side of the veth; the apt proxy listens here
    root: str  # merged overlay: the host's filesystem seen from outside
    pid: int = 0  # systemd-nspawn
    prefix: int = 30  # of host0's address: 30 on its own veth link, 24 on the bed's bridge
    bridged: bool = False

    @property
    def veth(self) -> str:
        """The host side of the veth pair, as systemd-nspawn names it."""
        return f"{'vb' if self.bridged else 've'}-{self.name}"


@dataclass
class Testbed:
    __test__ = False  # not a pytest test class despite the name

    workdir: Path
    hosts: list[Host] = field(default_factory=list)
    proxy_pid: int = 0
    proxy_port: int = 0
    bridge: str = ""  # the bed's bridge (network "bridge"), deleted by down()

    @property
    def key(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def inventory_ini(self) -> Path:
        return self.workdir / "inventory.ini"

    @property
    def inventory_yml(self) -> Path:
        return self.workdir / "inventory.yml"

    def save(self) -> None:
        state = {"proxy_pid": self.proxy_pid, "proxy_port": self.proxy_port, "bridge": self.bridge,
                 "hosts": [asdict(h) for h in self.hosts]}
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, workdir: Path) -> Testbed:
        state = json.loads((workdir / "state.json").read_text())
        return cls(workdir=workdir, hosts=[Host(**h) for h in state["hosts"]],
                   proxy_pid=state["proxy_pid"], proxy_port=state["proxy_port"],
                   bridge=state.get("bridge", ""))

    def ssh(self, host: Host, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", *ssh_options(self.key), f"root@{host.address}", command],
                              capture_output=True, text=True, timeout=timeout)


def ssh_options(key: Path) -> list[str]:
    return ["-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]


def _pick_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no local route overlaps (other beds may run beside this one)."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True, timeout=30).stdout
    used = []
    for line in routes.splitlines():
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(line.split()[0], strict=False))
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise TestbedError("no free 10.x.y.0/24 subnet for the test hosts' veths")


def _prepare_host(bed: Testbed, host: Host, base: Path, pubkey: str, binds: Sequence[str],
                  binds_rw: Sequence[str]) -> list[str]:
    hostdir = bed.workdir / "hosts" / host.name
    for sub in ("upper", "work", "merged"):
        (hostdir / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base},upperdir={hostdir / 'upper'},workdir={hostdir / 'work'}",
                    host.root], check=True, timeout=30)
    root = Path(host.root)
    (root / "etc/hostname").write_text(host.name + "\n")
    peers = bed.hosts if host.bridged else [host]  # only bridged hosts can reach each other
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n" + "".join(f"{h.address} {h.name}\n" for h in peers))
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    (ssh_dir / "authorized_keys").chmod(0o600)
    subprocess.run(["ssh-keygen", "-A", "-f", str(root)], check=True, capture_output=True, timeout=60)
    net = root / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "80-aidc-host0.network").write_text(
        f"[Match]\nName=host0\n\n[Network]\nAddress={host.address}/{host.prefix}\nGateway={host.gateway}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.is_symlink():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    return [f"--bind-ro={b}" for b in binds] + [f"--bind={b}" for b in binds_rw]


def _boot(bed: Testbed, host: Host, extra: list[str]) -> None:
    log = open(bed.workdir / "hosts" / host.name / "console.log", "wb")  # noqa: SIM115 (lives with the host)
    # Bridged hosts: no name server is reachable from their namespace; without resolv.conf a lookup
    # that /etc/hosts cannot answer fails at once instead of after DNS timeouts (torchrun's reverse
    # lookups of its peers waited 12 s each).
    network = [f"--network-bridge={bed.bridge}", "--resolv-conf=delete"] if host.bridged else ["--network-veth"]
    proc = subprocess.Popen(
        ["systemd-nspawn", "-D", host.root, "-M", host.name, "--register=no", "--keep-unit", "-q",
         *network, "-b", "--console=passive",
         # pam_limits must be able to raise memlock/nofile for logins, as on a real machine.
         "--capability=CAP_SYS_RESOURCE", *extra],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    host.pid = proc.pid
    bed.save()


def _wait(what: str, check, timeout: float, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TestbedError(f"timed out after {timeout:.0f} s waiting for {what}")


def _link_up(bed: Testbed, host: Host) -> None:
    _wait(f"{host.veth} to appear (console: {bed.workdir}/hosts/{host.name}/console.log)",
          lambda: Path(f"/sys/class/net/{host.veth}").exists(), BOOT_TIMEOUT_S)
    if host.bridged:
        return  # systemd-nspawn attaches it to the bridge and brings it up; the bridge holds the address
    subprocess.run(["ip", "addr", "replace", f"{host.gateway}/30", "dev", host.veth], check=True, timeout=30)
    subprocess.run(["ip", "link", "set", host.veth, "up"], check=True, timeout=30)


def _sshd_ready(bed: Testbed, host: Host) -> bool:
    try:
        with socket.create_connection((host.address, 22), timeout=1):
            pass
    except OSError:
        return False
    return bed.ssh(host, "systemctl is-system-running --wait >/dev/null 2>&1; true", 60).returncode == 0


NETWORKS = ("veth", "bridge")


def up(workdir: Path, count: int, binds: Sequence[str] = (),
       host_vars: Mapping[int, Mapping[str, object]] | None = None, *,
       network: str = "veth", binds_rw: Sequence[str] = ()) -> Testbed:
    """Boot ``count`` hosts under ``workdir``; on any failure, tear down what exists and raise.

    ``binds``/``binds_rw`` are ``SRC[:DST]`` read-only/read-write bind mounts into every host;
    ``network`` is one of :data:`NETWORKS` (see the module docstring).
    """
    if network not in NETWORKS:
        raise TestbedError(f"network={network!r} is not allowed; use one of {', '.join(NETWORKS)}")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bed = Testbed(workdir=workdir)
    try:
        _up(bed, count, binds, binds_rw, network)
        write_inventories(bed, host_vars or {})
    except BaseException:
        down(bed)
        raise
    return bed


def _plan_hosts(bed: Testbed, count: int, network: str) -> None:
    """Name and address every host before any boots: bridged hosts list all peers in /etc/hosts."""
    subnet = _pick_subnet()
    net = list(subnet.hosts())
    tag = "".join(random.choices("0123456789abcdef", k=4))
    if network == "bridge":
        bed.bridge = f"aidc{tag}br"
        bed.save()  # recorded before it exists: down() deletes it even after a partial start
        gateway = str(net[0])
        subprocess.run(["ip", "link", "add", bed.bridge, "type", "bridge"], check=True, timeout=30)
        subprocess.run(["ip", "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", bed.bridge],
                       check=True, timeout=30)
        subprocess.run(["ip", "link", "set", bed.bridge, "up"], check=True, timeout=30)
    for i in range(count):
        name = f"aidc{tag}h{i + 1}"
        root = str(bed.workdir / "hosts" / name / "merged")
        if network == "bridge":
            host = Host(name=name, address=str(net[i + 1]), gateway=gateway, root=root,
                        prefix=subnet.prefixlen, bridged=True)
        else:
            host = Host(name=name, address=str(net[4 * i + 1]), gateway=str(net[4 * i]), root=root)
        bed.hosts.append(host)
    bed.save()


def _up(bed: Testbed, count: int, binds: Sequence[str], binds_rw: Sequence[str], network: str) -> None:
    base = rootfs.ensure_rootfs()
    if not bed.key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(bed.key)],
                       check=True, timeout=30)
    pubkey = bed.key.with_suffix(".pub").read_text()
    _plan_hosts(bed, count, network)
    for host in bed.hosts:
        _boot(bed, host, _prepare_host(bed, host, base, pubkey, binds, binds_rw))
    for host in bed.hosts:
        _link_up(bed, host)
    gateways = list(dict.fromkeys(h.gateway for h in bed.hosts))  # one bridge address, or one per veth
    proc, port = start_proxy(bed.workdir, rootfs.cache_dir() / "apt-cacher-ng", gateways)
    bed.proxy_pid, bed.proxy_port = proc.pid, port
    bed.save()
    for host in bed.hosts:
        (Path(host.root) / "etc/apt/apt.conf.d/01aidc-testbed-proxy").write_text(
            apt_proxy_conf(host.gateway, port))
    for host in bed.hosts:
        _wait(f"sshd on {host.name} ({host.address})", lambda h=host: _sshd_ready(bed, h), BOOT_TIMEOUT_S, 1)


def _stop(pid: int, timeout: float) -> None:
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (CLI `down`): poll its existence instead
            done = 0 if Path(f"/proc/{pid}").exists() else pid
        if done:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def down(bed: Testbed) -> None:
    """Stop hosts and proxy, unmount overlays, delete veths and host dirs; never raises for leftovers."""
    for host in bed.hosts:
        _stop(host.pid, STOP_TIMEOUT_S)
    _stop(bed.proxy_pid, 10)
    for host in bed.hosts:
        if os.path.ismount(host.root):
            if subprocess.run(["umount", host.root], capture_output=True, timeout=60).returncode:
                subprocess.run(["umount", "-l", host.root], capture_output=True, timeout=60)
        if Path(f"/sys/class/net/{host.veth}").exists():
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True, timeout=30)
    if bed.bridge and Path(f"/sys/class/net/{bed.bridge}").exists():
        subprocess.run(["ip", "link", "del", bed.bridge], capture_output=True, timeout=30)
    shutil.rmtree(bed.workdir / "hosts", ignore_errors=True)
    bed.hosts, bed.proxy_pid, bed.bridge = [], 0, ""
    if bed.workdir.exists():
        bed.save()


@contextlib.contextmanager
def testbed(workdir: Path, count: int, binds: Sequence[str] = (),
            host_vars: Mapping[int, Mapping[str, object]] | None = None, *,
            network: str = "veth", binds_rw: Sequence[str] = ()) -> Iterator[Testbed]:
    """Hosts for the duration of a ``with`` block; SIGTERM (e.g. a CI timeout) still tears down."""
    previous = signal.getsignal(signal.SIGTERM)

    def _terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    bed = None
    try:
        bed = up(workdir, count, binds, host_vars, network=network, binds_rw=binds_rw)
        yield bed
    finally:
        if bed is not None:
            down(bed)
        signal.signal(signal.SIGTERM, previous)
