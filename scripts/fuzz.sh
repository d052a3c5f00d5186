#!/usr/bin/env bash
# Runs every fuzz target of the module for a fixed short time each
# (FUZZTIME, default 5s): decoders of untrusted input (HTTP bodies and
# query parameters, filters, package databases, image layers, OSV records).
# `make test` calls it after the tests; a crash fails the run and leaves
# the input under the package's testdata/fuzz for `go test` to replay.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-5s}"
fail=0
while IFS= read -r file; do
	dir="./$(dirname "$file")"
	for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
		echo "fuzz $dir $fn ($FUZZTIME)"
		if ! "$GO" test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" "$dir" >/tmp/palisade-fuzz.log 2>&1; then
			cat /tmp/palisade-fuzz.log
			fail=1
		fi
	done
done < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(' internal pkg cmd 2>/dev/null | sort)
exit $fail
