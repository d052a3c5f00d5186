#!/usr/bin/env bash
# ensure-govulncheck.sh builds the scanner tests' outside reference for Go
# findings: govulncheck v1.9.0 (golang.org/x/vuln) and a local Go
# vulnerability database made by golang.org/x/vulndb's cmd/indexdb from the
# same data/osv records Palisade imports. Both come from the Go module proxy
# (never a Palisade dependency) and are cached in ~/.cache/palisade/govulncheck.
# Prints the directory on success: DIR/govulncheck, DIR/indexdb, DIR/db.
set -euo pipefail

GOVULNCHECK_VERSION="${GOVULNCHECK_VERSION:-v1.9.0}"
VULNDB_VERSION="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"
DIR="${PALISADE_CACHE:-$HOME/.cache/palisade}/govulncheck/${GOVULNCHECK_VERSION}"
DB="$DIR/db-${VULNDB_VERSION}"

fail() {
	echo "ensure-govulncheck: $*" >&2
	echo "ensure-govulncheck: retry with: bash scripts/ensure-govulncheck.sh (needs the Go module proxy; GOPROXY=$(go env GOPROXY))" >&2
	exit 1
}
command -v go >/dev/null || fail "go is not on PATH"
mkdir -p "$DIR"
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
if ! [[ -x "$DIR/govulncheck" ]]; then
	echo "ensure-govulncheck: building govulncheck ${GOVULNCHECK_VERSION}" >&2
	GOBIN="$DIR/bin.tmp" nice go install "golang.org/x/vuln/cmd/govulncheck@${GOVULNCHECK_VERSION}" >&2 ||
		fail "go install golang.org/x/vuln/cmd/govulncheck@${GOVULNCHECK_VERSION} failed"
	mv "$DIR/bin.tmp/govulncheck" "$DIR/govulncheck"
fi
if ! [[ -x "$DIR/indexdb" ]]; then
	echo "ensure-govulncheck: building golang.org/x/vulndb/cmd/indexdb@${VULNDB_VERSION}" >&2
	GOBIN="$DIR/bin.tmp" nice go install "golang.org/x/vulndb/cmd/indexdb@${VULNDB_VERSION}" >&2 ||
		fail "go install golang.org/x/vulndb/cmd/indexdb@${VULNDB_VERSION} failed"
	mv "$DIR/bin.tmp/indexdb" "$DIR/indexdb"
fi
rmdir "$DIR/bin.tmp" 2>/dev/null || true
if ! [[ -f "$DB/.palisade-complete" ]]; then
	src="$(cd "$(mktemp -d)" && go mod download -json "golang.org/x/vulndb@${VULNDB_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
	[[ -d "$src/data/osv" ]] || fail "golang.org/x/vulndb@${VULNDB_VERSION} has no data/osv"
	rm -rf "$DB"
	"$DIR/indexdb" -vulns "$src/data/osv" -out "$DB" >&2 || fail "indexdb -vulns $src/data/osv failed"
	touch "$DB/.palisade-complete"
fi
echo "$DIR"
