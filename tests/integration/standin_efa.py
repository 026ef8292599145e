"""A stand-in for AWS's EFA installer tarball (``aws-efa-installer-X.Y.Z.tar.gz``).

Same layout (``aws-efa-installer/efa_installer.sh``), the same options (unknown ones are refused,
as the real script does), the same marker ``/opt/amazon/efa_installed_packages`` whose first line
names the version, and files where the real installer puts them: libfabric and ``fi_info`` under
``/opt/amazon/efa``, the aws-ofi-nccl plugin (``libnccl-net-ofi.so``, with the generic
``libnccl-net.so`` and tuner names beside it) under ``/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu`` as
Debian/Ubuntu builds place it. Contents are stubs. Like the real one it refuses to run unprompted
without ``-y``, cannot build the kernel module in a container (needs ``--skip-kmod``), writes its
marker before its last steps, skips a bundled part that is already the same or newer (so a lower
version needs ``-u`` first), and uninstalls with ``-u``. ``/etc/aidc-standin-efa-fail-late`` on the
host makes it fail after writing the marker, as a failing initramfs update would.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

#: A newer installer published beside the pinned one, for the pin-change test.
NEWER_EFA = "1.50.0"

_SCRIPT = r"""#!/bin/bash
# aidc stand-in for AWS's efa_installer.sh @VERSION@: same options, marker and layout; stub files.
set -eu
EFA_INSTALLER_VERSION=@VERSION@
MARKER=/opt/amazon/efa_installed_packages
# Debian/Ubuntu builds put the plugin in the multiarch directory.
PLUGIN_DIR=/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu
YES=0; SKIP_KMOD=0; SKIP_LIMITS=0; NO_VERIFY=0; SKIP_PLUGIN=0; UNINSTALL=0
usage() {
	cat <<EOF
usage: $(basename "$0") [options]
 -y, --yes  -u, --uninstall  -n, --no-verify  -l, --skip-limit-conf  -k, --skip-kmod
 -d, --debug-packages  -g, --enable-gdr  -m, --minimal  --skip-mpi  --skip-plugin  -h, --help
EOF
}
while [ $# -gt 0 ]; do
	case "$1" in
	-y|--yes) YES=1 ;;
	-u|--uninstall) UNINSTALL=1 ;;
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
if [ "$UNINSTALL" -eq 1 ]; then
	echo "== Uninstalling EFA packages (aidc stand-in) =="
	rm -rf /opt/amazon/efa /opt/amazon/ofi-nccl "$MARKER"
	exit 0
fi
[ "$YES" -eq 1 ] || { echo "Error: would prompt for confirmation (stand-in); pass -y" >&2; exit 1; }
if [ "$SKIP_KMOD" -eq 0 ]; then
	echo "Error: cannot build the EFA kernel module here (stand-in, container); pass --skip-kmod" >&2
	exit 1
fi
echo "== Installing EFA installer $EFA_INSTALLER_VERSION (aidc stand-in) =="
# Like the real installer: a bundled part is skipped when the installed one is the same or newer
# (a stub's content carries its version).
install_stub() {
	local path=$1 what=$2 have newest
	have=$(sed -n 's/.*(aidc stand-in \(.*\))$/\1/p' "$path" 2>/dev/null || true)
	newest=$(printf '%s\n%s\n' "$have" "$EFA_INSTALLER_VERSION" | sort -V | tail -n1)
	if [ -n "$have" ] && [ "$newest" = "$have" ]; then
		echo "$what $have already installed"
		return
	fi
	echo "$what (aidc stand-in $EFA_INSTALLER_VERSION)" >"$path"
}
mkdir -p /opt/amazon/efa/bin /opt/amazon/efa/lib
printf '#!/bin/sh\necho "fi_info: libfabric stub of EFA installer %s (aidc stand-in); no EFA device" >&2\nexit 1\n' \
	"$EFA_INSTALLER_VERSION" >/opt/amazon/efa/bin/fi_info
chmod 755 /opt/amazon/efa/bin/fi_info
install_stub /opt/amazon/efa/lib/libfabric.so.1 "libfabric stub"
PACKAGES="libfabric-aws_$EFA_INSTALLER_VERSION efa-config_1.18"
if [ "$SKIP_PLUGIN" -eq 0 ]; then
	mkdir -p "$PLUGIN_DIR"
	install_stub "$PLUGIN_DIR/libnccl-net-ofi.so" "aws-ofi-nccl stub"
	for name in libnccl-net.so libnccl-ofi-tuner.so libnccl-tuner-ofi.so; do
		ln -sf libnccl-net-ofi.so "$PLUGIN_DIR/$name"
	done
	PACKAGES="$PACKAGES libnccl-ofi_1.21"
fi
if [ "$SKIP_LIMITS" -eq 0 ]; then
	printf '* soft memlock unlimited\n* hard memlock unlimited\n' >/etc/security/limits.d/01_efa.conf
fi
# The real installer writes its marker before the initramfs update, module reload and self-test.
cat <<EOF >"$MARKER"
# EFA installer version: $EFA_INSTALLER_VERSION
# Debug packages installed: no
# Packages installed:
$PACKAGES
EOF
if [ -e /etc/aidc-standin-efa-fail-late ]; then
	echo "Error: update-initramfs failed (aidc stand-in: /etc/aidc-standin-efa-fail-late)" >&2
	exit 1
fi
if [ "$NO_VERIFY" -eq 0 ] && ! grep -qil '^0xefa' /sys/bus/pci/devices/*/device 2>/dev/null; then
	echo "EFA device not detected, skipping test"
fi
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
