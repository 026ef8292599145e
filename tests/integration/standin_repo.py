"""A local APT repository standing in for NVIDIA's CUDA repository, for packages Debian lacks.

Same package names and version strings as NVIDIA's repository (cuda-keyring 1.1-1, cuda-
drivers-<branch>, nvidia-persistenced, nvidia-fabricmanager-<branch>, libnvidia-nscq-<branch>,
libnccl2, libnccl-dev, datacenter-gpu-manager-4-core and -4-cuda<major>, datacenter-gpu-manager-
exporter, nvlsm), signed with a throw-away key that the stand-in cuda-keyring installs where the
real one puts NVIDIA's key. Every pinned package also has a NEWER version next to it, so a missing
pin or hold shows up as the wrong version installed. Contents are stubs: only names, versions,
dependencies and the systemd units are real. The same directory also holds stand-in EFA installer
tarballs (tests/integration/standin_efa.py) and ``standin-vars.yml``, the variables that point the
roles at them (the installer's sha256).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.integration.standin_efa import NEWER_EFA, build_installers

#: Versions newer than the pins, published beside them to catch an unpinned install.
NEWER_DRIVER = "570.195.03"
NEWER_NCCL = "2.27.7-1+cuda12.9"
NEWER_DCGM = "1:4.5.0-1"
NEWER_DCGM_EXPORTER = "4.8.2-1"
NEWER_NVLSM = "2025.12.1-1"
#: DCGM 3, as a DLAMI carries it.
LEGACY_DCGM = "1:3.3.9"
KEYRING_VERSION = "1.1-1"
KEYRING_PATH = "usr/share/keyrings/cuda-archive-keyring.gpg"


@dataclass
class Package:
    name: str
    version: str
    depends: str = ""
    arch: str = "amd64"
    files: dict[str, str] = field(default_factory=dict)  # path in package -> content
    executables: tuple[str, ...] = ()


def _unit(description: str, exec_start: str) -> str:
    return (f"[Unit]\nDescription={description} (aidc stand-in repo stub)\n\n"
            f"[Service]\nType=simple\nExecStart={exec_start}\n\n[Install]\nWantedBy=multi-user.target\n")


def _stub(name: str) -> str:
    return f"#!/bin/sh\necho '{name}: aidc stand-in repo stub, no GPU here' >&2\nexit 1\n"


def driver_packages(branch: str, version: str) -> list[Package]:
    """Driver-side packages of one upstream ``version`` on ``branch``."""
    full = f"{version}-1"
    return [
        Package(f"cuda-drivers-{branch}", full, depends=f"nvidia-persistenced (= {full})"),
        Package(f"nvidia-open-{branch}", full, depends=f"nvidia-persistenced (= {full})"),
        Package("nvidia-persistenced", full, files={
            "usr/bin/nvidia-persistenced": _stub("nvidia-persistenced"),
            "lib/systemd/system/nvidia-persistenced.service":
                # As NVIDIA's Ubuntu packaging ships it: persistence mode off unless the role fixes it.
                _unit("NVIDIA Persistence Daemon",
                      "/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose"),
        }, executables=("usr/bin/nvidia-persistenced",)),
        Package(f"nvidia-fabricmanager-{branch}", full, files={
            "usr/bin/nv-fabricmanager": _stub("nv-fabricmanager"),
            "lib/systemd/system/nvidia-fabricmanager.service":
                _unit("NVIDIA fabric manager service",
                      "/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg"),
        }, executables=("usr/bin/nv-fabricmanager",)),
        Package(f"libnvidia-nscq-{branch}", full, files={
            f"usr/lib/x86_64-linux-gnu/libnvidia-nscq.so.{version}": "aidc stand-in repo stub\n",
        }),
    ]


def nccl_packages(version: str) -> list[Package]:
    return [Package("libnccl2", version), Package("libnccl-dev", version, depends=f"libnccl2 (= {version})")]


def dcgm_packages(version: str, cuda_major: str) -> list[Package]:
    return [
        Package("datacenter-gpu-manager-4-core", version, files={
            "usr/bin/nv-hostengine": _stub("nv-hostengine"),
            "usr/bin/dcgmi": _stub("dcgmi"),
            "lib/systemd/system/nvidia-dcgm.service":
                _unit("NVIDIA DCGM service", "/usr/bin/nv-hostengine -n --service-account nvidia-dcgm"),
        }, executables=("usr/bin/nv-hostengine", "usr/bin/dcgmi")),
        Package(f"datacenter-gpu-manager-4-cuda{cuda_major}", version,
                depends=f"datacenter-gpu-manager-4-core (= {version})"),
        Package(f"datacenter-gpu-manager-4-proprietary-cuda{cuda_major}", version,
                depends=f"datacenter-gpu-manager-4-cuda{cuda_major} (= {version})"),
    ]


#: The unit as NVIDIA's exporter package ships it (embedded host engine, log file, Restart=on-abort):
#: the dcgm role's drop-in must take effect over it.
EXPORTER_UNIT = """[Unit]
Description=NVIDIA DCGM-exporter service (aidc stand-in repo stub)
Wants=nvidia-dcgm.service
After=nvidia-dcgm.service

[Service]
User=root
PrivateTmp=false
StandardOutput=append:/var/dcgm-exporter.log
StandardError=append:/var/dcgm-exporter.log
ExecStart=/usr/bin/dcgm-exporter -f /etc/dcgm-exporter/default-counters.csv
Restart=on-abort

[Install]
WantedBy=multi-user.target
"""


def dcgm_exporter_package(version: str) -> Package:
    return Package("datacenter-gpu-manager-exporter", version, depends="datacenter-gpu-manager-4-core", files={
        "usr/bin/dcgm-exporter": _stub("dcgm-exporter"),
        "etc/dcgm-exporter/default-counters.csv": "DCGM_FI_DEV_GPU_UTIL, gauge, GPU utilization (in %).\n",
        "lib/systemd/system/nvidia-dcgm-exporter.service": EXPORTER_UNIT,
    }, executables=("usr/bin/dcgm-exporter",))


def nvlsm_package(version: str) -> Package:
    """NVLink Subnet Manager (NVLink 5 systems): fabric manager starts it from this path."""
    return Package("nvlsm", version, files={"opt/nvidia/nvlsm/sbin/nvlsm": _stub("nvlsm")},
                   executables=("opt/nvidia/nvlsm/sbin/nvlsm",))


def legacy_dcgm_package() -> Package:
    """DCGM 3 as images carry it: its files collide with DCGM 4's, so dpkg refuses both at once."""
    return Package("datacenter-gpu-manager", LEGACY_DCGM, files={
        "usr/bin/nv-hostengine": _stub("nv-hostengine"),
        "usr/bin/dcgmi": _stub("dcgmi"),
        "lib/systemd/system/nvidia-dcgm.service":
            _unit("NVIDIA DCGM service", "/usr/bin/nv-hostengine -n --service-account nvidia-dcgm"),
    }, executables=("usr/bin/nv-hostengine", "usr/bin/dcgmi"))


def _build_deb(pkg: Package, out: Path, work: Path) -> None:
    root = work / f"{pkg.name}_{pkg.version.replace(':', '_')}"
    (root / "DEBIAN").mkdir(parents=True)
    doc = root / "usr/share/doc" / pkg.name / "README.aidc-standin"
    doc.parent.mkdir(parents=True)
    doc.write_text(f"{pkg.name} {pkg.version}: aidc stand-in for NVIDIA's package of that name.\n")
    for rel, content in pkg.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(0o755 if rel in pkg.executables else 0o644)
    control = (f"Package: {pkg.name}\nVersion: {pkg.version}\nArchitecture: {pkg.arch}\n"
               "Maintainer: aidc tests <aidc@localhost>\nSection: misc\nPriority: optional\n"
               f"Description: {pkg.name} (aidc stand-in repo)\n Stub with NVIDIA's name and version.\n")
    if pkg.depends:
        control += f"Depends: {pkg.depends}\n"
    (root / "DEBIAN/control").write_text(control)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root),
                    str(out / f"{pkg.name}_{pkg.version.split(':')[-1]}_{pkg.arch}.deb")],
                   check=True, capture_output=True, timeout=60)


def _cuda_major(nccl_version: str) -> str:
    return nccl_version.rsplit("+cuda", 1)[1].split(".")[0]


def _gpg(gnupghome: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {**os.environ, "GNUPGHOME": str(gnupghome)}
    return subprocess.run(["gpg", "--batch", "--yes", "--quiet", *args], input=stdin, env=env,
                          check=True, capture_output=True, timeout=120).stdout


#: Written beside the repository: variables a converge of the test hosts needs (``-e @FILE``).
STANDIN_VARS = "standin-vars.yml"


def build_repo(out: Path, driver_branch: str, driver_version: str, nccl_version: str, efa_version: str,
               dcgm_version: str, dcgm_exporter_version: str, nvlsm_version: str) -> Path:
    """Build a signed flat repository under ``out`` (``deb [signed-by=...] file:///OUT/ /``), the
    stand-in EFA installers (pinned and newer) and ``out/standin-vars.yml``."""
    out.mkdir(parents=True, exist_ok=True)
    sums = build_installers(out, [efa_version, NEWER_EFA])
    (out / STANDIN_VARS).write_text(yaml.safe_dump({"aidc_efa_installer_sha256": sums[efa_version]}))
    gnupghome = Path(tempfile.mkdtemp(prefix="aidc-gpg-"))
    gnupghome.chmod(0o700)
    try:
        with tempfile.TemporaryDirectory(prefix="aidc-debs-") as work:
            _gpg(gnupghome, "--passphrase", "", "--quick-gen-key", "aidc stand-in repo <aidc@localhost>",
                 "ed25519", "sign", "1d")
            key = _gpg(gnupghome, "--export")
            packages = [
                *driver_packages(driver_branch, driver_version),
                *driver_packages(driver_branch, NEWER_DRIVER),
                *nccl_packages(nccl_version),
                *nccl_packages(NEWER_NCCL),
                # The NCCL pins name the CUDA line; DCGM's package follows its major.
                *dcgm_packages(dcgm_version, _cuda_major(nccl_version)),
                *dcgm_packages(NEWER_DCGM, _cuda_major(NEWER_NCCL)),
                legacy_dcgm_package(),
                dcgm_exporter_package(dcgm_exporter_version),
                dcgm_exporter_package(NEWER_DCGM_EXPORTER),
                nvlsm_package(nvlsm_version),
                nvlsm_package(NEWER_NVLSM),
                Package("cuda-keyring", KEYRING_VERSION, arch="all", files={KEYRING_PATH: key}),
            ]
            for pkg in packages:
                _build_deb(pkg, out, Path(work))
        _index_and_sign(out, gnupghome)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(gnupghome)},
                       capture_output=True, timeout=30)
        shutil.rmtree(gnupghome, ignore_errors=True)
    for path in [out, *out.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # apt's _apt sandbox user reads it
    return out


def _index_and_sign(out: Path, gnupghome: Path) -> None:
    packages = subprocess.run(["apt-ftparchive", "packages", "."], cwd=out, check=True,
                              capture_output=True, timeout=60).stdout
    (out / "Packages").write_bytes(packages)
    release = subprocess.run(
        ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=NVIDIA",
         "-o", "APT::FTPArchive::Release::Label=NVIDIA CUDA (aidc stand-in repo)", "release", "."],
        cwd=out, check=True, capture_output=True, timeout=60).stdout
    (out / "Release").write_bytes(release)
    (out / "InRelease").write_bytes(_gpg(gnupghome, "--clearsign", "-o", "-", str(out / "Release")))
    (out / "Release.gpg").write_bytes(_gpg(gnupghome, "-abs", "-o", "-", str(out / "Release")))


def main() -> None:
    """``python -m tests.integration.standin_repo OUTDIR``: build with the group_vars pins."""
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.integration.standin_repo OUTDIR")
    pins = yaml.safe_load((Path(__file__).resolve().parents[2] / "ansible/group_vars/all.yml").read_text())
    out = build_repo(Path(sys.argv[1]), pins["aidc_driver_branch"], pins["aidc_driver_version"],
                     pins["aidc_nccl_version"], pins["aidc_efa_installer_version"], pins["aidc_dcgm_version"],
                     pins["aidc_dcgm_exporter_version"], pins["aidc_nvlsm_version"])
    print(out)


if __name__ == "__main__":
    main()
