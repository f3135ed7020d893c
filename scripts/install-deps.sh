#!/usr/bin/env bash
# Installs the Debian packages eucalypt needs (idempotent; as root on Debian 12).
# Usage: scripts/install-deps.sh [--test]   (--test adds what only the test suite needs)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3 python3-venv python3-dev build-essential iproute2 iptables
          qemu-system-x86 qemu-utils dnsmasq-base busybox-static dropbear-bin
          e2fsprogs cpio openssh-client curl ca-certificates)
if [ "${1:-}" = "--test" ]; then
  packages+=(postgresql rclone)
fi
# Components may list extra Debian packages in DEPENDENCIES files.
while IFS= read -r f; do
  while IFS= read -r p; do
    p="${p%%#*}"; p="$(echo "$p" | xargs)"
    [ -n "$p" ] && packages+=("$p")
  done < "$f"
done < <(find src/eucalypt -name DEPENDENCIES -type f | sort)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The guest image build fetches Debian packages with `apt-get download`: it needs package lists.
have_lists=0
ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 && have_lists=1
if [ ${#missing[@]} -eq 0 ] && [ $have_lists -eq 1 ]; then
  echo "install-deps: all ${#packages[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root (or: sudo $0 $*)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
