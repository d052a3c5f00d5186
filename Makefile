# Palisade: two commands matter.
#   make demo   the main job on embedded defaults (needs root for the lab)
#   make test   every test, after installing what the machine lacks
GO ?= go
# The build is stamped with its version and commit (palisade version,
# /api/v1/status, agent heartbeats). BIN names the binary.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
BIN ?= bin/palisade
LDFLAGS = -X github.com/palisade-dev/palisade/internal/version.Version=$(VERSION) \
	-X github.com/palisade-dev/palisade/internal/version.Commit=$(COMMIT)

.PHONY: demo test deps build bench console

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/palisade

deps:
	bash scripts/ensure-deps.sh

demo: build
	bash scripts/ensure-deps.sh --demo
	$(BIN) demo

test: deps
	$(GO) test -count=1 -timeout 45m ./...
	GO=$(GO) bash scripts/fuzz.sh

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

# The web console (web/ → internal/console/dist, committed so `go build`
# needs no Node; TestDistIsFresh fails when dist/ is older than web/).
console:
	cd web && npm ci --no-audit --no-fund && npx tsc --noEmit && node build.mjs
