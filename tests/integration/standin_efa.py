"""A stand-in for AWS's EFA installer tarball (``aws-efa-installer-X.Y.Z.tar.gz``).

Same layout (``aws-efa-installer/efa_installer.sh``), the same options (unknown ones are refused,
as the real script does), the same marker ``/opt/amazon/efa_installed_packages`` whose first line
names the version, and files where the real installer puts them: libfabric and ``fi_info`` under
``/opt/amazon/efa``, the aws-ofi-nccl plugin (``libnccl-net-ofi.so``, with the generic
``libnccl-net.so`` and tuner names beside it) under ``/opt/amazon/ofi-nccl/lib``. Contents are stubs.
Like the real one it refuses to run unprompted without ``-y``, cannot build the kernel module in a
container (needs ``--skip-kmod``) and fails its device test without an EFA device (needs
``--no-verify``), so a role that forgets the container options fails here too.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

#: A newer installer published beside the pinned one, for the pin-change test.
NEWER_EFA = "1.50.0"

_SCRIPT = r"""#!/bin/bash
# aidc stand-in for AWS's efa_installer.sh @VERSION@: same options and marker, stub files.
set -eu
EFA_INSTALLER_VERSION=@VERSION@
YES=0; SKIP_KMOD=0; SKIP_LIMITS=0; NO_VERIFY=0; SKIP_PLUGIN=0
usage() {
	cat <<EOF
usage: $(basename "$0") [options]
 -y, --yes  -n, --no-verify  -l, --skip-limit-conf  -k, --skip-kmod  -d, --debug-packages
 -g, --enable-gdr  -m, --minimal  --skip-mpi  --skip-plugin  -h, --help
EOF
}
while [ $# -gt 0 ]; do
	case "$1" in
	-y|--yes) YES=1 ;;
	-k|--skip-kmod) SKIP_KMOD=1 ;;
	-l|--skip-limit-conf) SKIP_LIMITS=1 ;;
	-n|--no-verify) NO_VERIFY=1 ;;
	--skip-plugin) SKIP_PLUGIN=1 ;;
	-d|--debug-packages|-g|--enable-gdr|-m|--minimal|--skip-mpi) ;;
	-h|--help) usage; exit 0 ;;
	*) echo "Error: unknown option $1" >&2; usage >&2; exit 1 ;;
	esac
	shift
done
[ "$(id -u)" -eq 0 ] || { echo "Error: efa_installer.sh must run as root" >&2; exit 1; }
. /etc/os-release
case "$ID-$VERSION_ID" in
debian-12|ubuntu-22.04|ubuntu-24.04) ;;
*) echo "Unsupported operating system." >&2; exit 1 ;;
esac
[ "$YES" -eq 1 ] || { echo "Error: would prompt for confirmation (stand-in); pass -y" >&2; exit 1; }
if [ "$SKIP_KMOD" -eq 0 ]; then
	echo "Error: cannot build the EFA kernel module here (stand-in, container); pass --skip-kmod" >&2
	exit 1
fi
echo "== Installing EFA installer $EFA_INSTALLER_VERSION (aidc stand-in) =="
rm -f /opt/amazon/efa_installed_packages
mkdir -p /opt/amazon/efa/bin /opt/amazon/efa/lib
printf '#!/bin/sh\necho "fi_info: libfabric stub of EFA installer %s (aidc stand-in); no EFA device" >&2\nexit 1\n' \
	"$EFA_INSTALLER_VERSION" >/opt/amazon/efa/bin/fi_info
chmod 755 /opt/amazon/efa/bin/fi_info
echo "libfabric stub (aidc stand-in $EFA_INSTALLER_VERSION)" >/opt/amazon/efa/lib/libfabric.so.1
PACKAGES="libfabric-aws_$EFA_INSTALLER_VERSION efa-config_1.18"
if [ "$SKIP_PLUGIN" -eq 0 ]; then
	mkdir -p /opt/amazon/ofi-nccl/lib
	echo "aws-ofi-nccl stub (aidc stand-in $EFA_INSTALLER_VERSION)" >/opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so
	ln -sf libnccl-net-ofi.so /opt/amazon/ofi-nccl/lib/libnccl-net.so
	ln -sf libnccl-net-ofi.so /opt/amazon/ofi-nccl/lib/libnccl-tuner-ofi.so
	PACKAGES="$PACKAGES libnccl-ofi_1.21"
fi
if [ "$SKIP_LIMITS" -eq 0 ]; then
	printf '* soft memlock unlimited\n* hard memlock unlimited\n' >/etc/security/limits.d/01_efa.conf
fi
if [ "$NO_VERIFY" -eq 0 ]; then
	grep -qil '^0xefa' /sys/bus/pci/devices/*/device 2>/dev/null || {
		echo "Error: EFA device not found; cannot run the EFA test (pass --no-verify)" >&2; exit 1; }
fi
cat <<EOF >/opt/amazon/efa_installed_packages
# EFA installer version: $EFA_INSTALLER_VERSION
# Debug packages installed: no
# Packages installed:
$PACKAGES
EOF
echo "===================================================="
echo "EFA installation complete."
"""


def installer_tarball(version: str) -> bytes:
    """The gzip tarball of a stand-in installer for ``version``."""
    script = _SCRIPT.replace("@VERSION@", version).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, mode in (("aws-efa-installer/efa_installer.sh", script, 0o755),
                                 ("aws-efa-installer/README.md", b"aidc stand-in EFA installer\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
        # The real tarball also carries the directory entry; unarchive must cope with it.
        info = tarfile.TarInfo("aws-efa-installer")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    return buf.getvalue()


def build_installers(out: Path, versions: list[str]) -> dict[str, str]:
    """Write ``aws-efa-installer-V.tar.gz`` for each version into ``out``; return version -> sha256."""
    sums = {}
    for version in versions:
        data = installer_tarball(version)
        path = out / f"aws-efa-installer-{version}.tar.gz"
        path.write_bytes(data)
        path.chmod(0o644)
        sums[version] = hashlib.sha256(data).hexdigest()
    return sums
