#!/usr/bin/env bash
# Installs the Debian packages that the disposable test hosts (tests/testbed) need.
# Idempotent and non-interactive; safe to call from .ci/run on every run.
set -euo pipefail

PACKAGES=(
  debootstrap          # builds the cached Debian 12 rootfs
  systemd-container    # systemd-nspawn boots each host
  iproute2             # veth addresses on both sides
  openssh-client       # Ansible and testinfra reach hosts over SSH
  apt-cacher-ng        # package proxy on the host side of each veth (also caches .debs)
  dpkg-dev             # dpkg-scanpackages for the stand-in NVIDIA repository
  apt-utils            # apt-ftparchive for the stand-in repository's Release file
  util-linux           # nsenter, mount (overlayfs)
  ca-certificates
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "hosts-prereqs: all present"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# The test bed starts its own apt-cacher-ng on the veth addresses; the packaged service must not
# start on install and listen on every interface. policy-rc.d stops invoke-rc.d from starting it.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT

apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get "${apt_opts[@]}" update -q
apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}"
echo "hosts-prereqs: installed ${missing[*]}"
