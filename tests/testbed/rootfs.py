"""The cached base root filesystem every test host boots from (debootstrapped Debian 12)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What Ansible and testinfra need inside a host: systemd as PID 1, sshd, python3 with apt bindings.
INCLUDE = (
    "systemd-sysv,dbus,openssh-server,python3,python3-apt,sudo,iproute2,ca-certificates,"
    "procps,kmod,gpgv"
)
DEFAULT_CACHE = "/var/cache/aidc-testbed"
# debootstrap takes ≈70 s here; a hung mirror must not hang CI.
DEBOOTSTRAP_TIMEOUT_S = 900


def cache_dir() -> Path:
    return Path(os.environ.get("AIDC_TESTBED_CACHE", DEFAULT_CACHE))


def _key() -> str:
    return hashlib.sha256(f"{SUITE}|{MIRROR}|{INCLUDE}".encode()).hexdigest()[:10]


def ensure_rootfs() -> Path:
    """Return the base rootfs directory, building it once (under a lock) if it is missing."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"rootfs-{SUITE}-{_key()}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".aidc-complete").exists():
            return final
        _build(final)
    return final


def _build(final: Path) -> None:
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("debootstrap %s into %s (first run only, ≈70 s)", SUITE, tmp)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(tmp), MIRROR],
        check=True,
        timeout=DEBOOTSTRAP_TIMEOUT_S,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(["chroot", str(tmp), "apt-get", "clean"], check=True, timeout=120)
    _prepare(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (final / ".aidc-complete").touch()


def _prepare(tmp: Path) -> None:
    lists = tmp / "var/lib/apt/lists"
    for entry in lists.iterdir():
        if entry.is_file():
            entry.unlink()
    # Backdated so that `cache_valid_time` in the roles still runs the first `apt-get update`.
    os.utime(lists, (946684800, 946684800))
    # Host keys are per host (generated at boot by the bed), never shared through the cache.
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tmp / "etc/machine-id").write_text("")
    sources = tmp / "etc/apt/sources.list"
    # Only `main`, like Debian's cloud images: the nvidia_driver role must add non-free itself.
    sources.write_text(
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb http://deb.debian.org/debian-security {SUITE}-security main\n"
    )
    # Hosts have no console logins; sshd is the only way in.
    for unit in ("getty@tty1.service", "console-getty.service"):
        link = tmp / "etc/systemd/system/getty.target.wants" / unit
        if link.is_symlink():
            link.unlink()
