#!/usr/bin/env bash
# ensure-rootfs.sh builds a Debian bookworm minbase root filesystem with
# debootstrap into ~/.cache/palisade/rootfs/bookworm-minbase (unless it is
# already there) and prints its path. The vulnerability scanner's tests turn it
# into an OCI image. Needs root and the machine's configured Debian mirror
# (~1 minute). Install the tool with: apt-get install debootstrap
set -euo pipefail

SUITE="${SUITE:-bookworm}"
DEST="${PALISADE_CACHE:-$HOME/.cache/palisade}/rootfs/${SUITE}-minbase"

if [[ -f "$DEST/var/lib/dpkg/status" && -f "$DEST/.palisade-complete" ]]; then
	echo "$DEST"
	exit 0
fi

fail() {
	echo "ensure-rootfs: $*" >&2
	echo "ensure-rootfs: retry with: bash scripts/ensure-rootfs.sh (as root; apt-get install debootstrap)" >&2
	exit 1
}

command -v debootstrap >/dev/null || fail "debootstrap is not installed: apt-get install debootstrap"
[[ "$(id -u)" == 0 ]] || fail "debootstrap needs root"

# The first deb URI of the machine's apt configuration, e.g. http://deb.debian.org/debian.
MIRROR="${DEBIAN_MIRROR:-}"
if [[ -z "$MIRROR" ]]; then
	MIRROR="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)"
fi
if [[ -z "$MIRROR" ]]; then
	MIRROR="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1 || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

TMP="${DEST}.tmp"
rm -rf "$TMP"
mkdir -p "$(dirname "$DEST")"
echo "ensure-rootfs: debootstrap --variant=minbase $SUITE $TMP $MIRROR (about 1 minute)" >&2
debootstrap --variant=minbase "$SUITE" "$TMP" "$MIRROR" >&2 || fail "debootstrap failed (see its log in $TMP/debootstrap/debootstrap.log)"
rm -rf "$TMP/var/cache/apt/archives"/*.deb
touch "$TMP/.palisade-complete"
rm -rf "$DEST"
mv "$TMP" "$DEST"
echo "$DEST"
