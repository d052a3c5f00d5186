# Palisade: two commands matter.
#   make demo   the main job on embedded defaults (needs root for the lab)
#   make test   every test, after installing what the machine lacks
GO ?= go

.PHONY: demo test deps build bench console

build:
	$(GO) build -o bin/palisade ./cmd/palisade

deps:
	bash scripts/ensure-deps.sh

demo: build
	bash scripts/ensure-deps.sh --demo
	./bin/palisade demo

test: deps
	$(GO) test -count=1 -timeout 45m ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

# The web console (web/ → internal/console/dist, committed so `go build`
# needs no Node; TestDistIsFresh fails when dist/ is older than web/).
console:
	cd web && npm ci --no-audit --no-fund && npx tsc --noEmit && node build.mjs
