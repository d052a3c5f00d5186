#!/usr/bin/env bash
# ensure-syft.sh builds syft v1.57.1 (an outside reference tool for the
# vulnerability scanner's tests and benchmarks, never a dependency) from the Go
# module proxy into ~/.cache/palisade/syft/v1.57.1/syft, unless it is already
# there. It prints the binary's path on success. Takes ~5 minutes on 2 cores.
set -euo pipefail

SYFT_VERSION="${SYFT_VERSION:-v1.57.1}"
DEST_DIR="${PALISADE_CACHE:-$HOME/.cache/palisade}/syft/${SYFT_VERSION}"
DEST="${DEST_DIR}/syft"

if [[ -x "$DEST" ]] && "$DEST" version >/dev/null 2>&1; then
	echo "$DEST"
	exit 0
fi

fail() {
	echo "ensure-syft: $*" >&2
	echo "ensure-syft: retry with: bash scripts/ensure-syft.sh (needs the Go module proxy; GOPROXY=$(go env GOPROXY))" >&2
	exit 1
}

command -v go >/dev/null || fail "go is not on PATH"
mkdir -p "$DEST_DIR"
# A throwaway module outside the repository, so syft's dependency graph never
# touches Palisade's go.mod.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "ensure-syft: building syft ${SYFT_VERSION} in $WORK (about 5 minutes)" >&2
go mod init palisade.local/syft-build >/dev/null 2>&1 || fail "go mod init failed"
GOFLAGS=-mod=mod go get "github.com/anchore/syft@${SYFT_VERSION}" >&2 ||
	fail "go get github.com/anchore/syft@${SYFT_VERSION} failed (module proxy unreachable?)"
CGO_ENABLED=0 GOFLAGS=-mod=mod nice go build -trimpath -o "$DEST.tmp" \
	-ldflags "-X main.version=${SYFT_VERSION#v}" github.com/anchore/syft/cmd/syft >&2 ||
	fail "go build github.com/anchore/syft/cmd/syft failed"
mv "$DEST.tmp" "$DEST"
"$DEST" version >/dev/null 2>&1 || fail "built $DEST but it does not run"
echo "$DEST"
