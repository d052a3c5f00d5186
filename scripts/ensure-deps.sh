#!/usr/bin/env bash
# ensure-deps.sh installs what a fresh machine lacks for Palisade's tests and
# demo: Debian packages (iproute2, iptables, ipset, conntrack, debootstrap,
# chromium for the web console's browser tests),
# the control plane (kube-apiserver, kube-controller-manager, etcd built from
# the Go module proxy and cached in ~/.cache/palisade), syft and govulncheck
# with a local Go vulnerability database (outside references for the
# scanner's tests) and a Debian minbase rootfs. Idempotent:
# a warm machine finishes in seconds. Needs root.
#
# --demo installs only what `palisade demo` needs (packages and the control
# plane), skipping the scanner tests' syft build and rootfs.
set -euo pipefail
demo=false
[[ "${1:-}" == "--demo" ]] && demo=true
cd "$(dirname "$0")/.."

[[ "$(id -u)" == 0 ]] || { echo "ensure-deps: run as root (tests create network namespaces and iptables rules)" >&2; exit 1; }

need=()
pairs="ip:iproute2 iptables:iptables ipset:ipset conntrack:conntrack debootstrap:debootstrap rpm:rpm db5.3_load:db5.3-util sqlite3:sqlite3"
$demo || pairs+=" chromium:chromium" # the console's browser tests
for pair in $pairs; do
	command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
	echo "ensure-deps: apt-get install ${need[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2; }
fi

# The control plane builds in parallel with syft: both are mostly waiting on
# the module proxy at first, then on the compiler.
go run ./cmd/palisade dev kube build >/dev/null &
kube=$!
if $demo; then
	wait "$kube" || { echo "ensure-deps: control-plane build failed; retry: go run ./cmd/palisade dev kube build" >&2; exit 1; }
	echo "ensure-deps: ready for the demo" >&2
	exit 0
fi
bash scripts/ensure-syft.sh >/dev/null &
syft=$!
bash scripts/ensure-govulncheck.sh >/dev/null &
govulncheck=$!
bash scripts/ensure-rootfs.sh >/dev/null
wait "$kube" || { echo "ensure-deps: control-plane build failed; retry: go run ./cmd/palisade dev kube build" >&2; exit 1; }
wait "$syft" || { echo "ensure-deps: syft build failed; retry: bash scripts/ensure-syft.sh" >&2; exit 1; }
wait "$govulncheck" || { echo "ensure-deps: govulncheck build failed; retry: bash scripts/ensure-govulncheck.sh" >&2; exit 1; }
echo "ensure-deps: ready" >&2
