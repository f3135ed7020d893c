#!/bin/sh
# Install the Debian packages the guest image build and boot tests need
# (listed one per line in src/eucalypt/nc/guestimage/DEPENDENCIES).
#
# The guest's own packages (kernel, busybox-static, dropbear-bin, libraries) are NOT
# installed: build.py fetches them with `apt-get download` into its cache.
#
# Usage: scripts/install-guest-deps.sh     (as root, on Debian 12)
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
deps="$here/src/eucalypt/nc/guestimage/DEPENDENCIES"

missing=""
for pkg in $(grep -v '^[[:space:]]*\(#\|$\)' "$deps"); do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Package lists are needed both to install and for build.py's apt-get download.
if [ -n "$missing" ] || ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi

if [ -z "$missing" ]; then
    echo "guest image dependencies already installed"
    exit 0
fi
echo "installing:$missing"
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
