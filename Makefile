# The one test command (README, .ci/run): formatting, vet, the race-enabled
# test suite, and a short run of every fuzz target.
GO ?= go
FUZZTIME ?= 10s
# A new crasher is minimised within this bound, so that minimising cannot
# eat a target's whole run.
FUZZMINTIME ?= 5s

# package:FuzzTarget pairs; every parser and every untrusted input has one.
FUZZ_TARGETS = \
	./internal/jsonvalue:FuzzDecode \
	./internal/jsonvalue:FuzzCanonical \
	./internal/schema:FuzzCompile \
	./internal/schema:FuzzFastPath \
	./internal/policy:FuzzCompile \
	./internal/program:FuzzLoad \
	./internal/runtime:FuzzSubmit \
	./internal/runtime:FuzzDecide \
	./internal/receipt:FuzzVerify \
	./internal/access:FuzzParseApprovers \
	./internal/access:FuzzBearer \
	./internal/tools:FuzzToolCall \
	./internal/analyzer:FuzzAnalyze

.PHONY: test check unit fuzz bench build e2e

test: check unit fuzz e2e

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		GO="$(GO)" tests/fuzz.sh $$pkg $$fn $(FUZZTIME) $(FUZZMINTIME); \
	done

# Real MCP clients against the built server: the TypeScript SDK, the
# conformance suite and the Inspector CLI (tests/node/README.md). Installs
# Node 22 and the pinned npm packages into .cache/node/ on first use.
e2e:
	GO="$(GO)" tests/node/run.sh

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/... ./cmd/...

build:
	$(GO) build -o nano-vm-mcp ./cmd/nano-vm-mcp
