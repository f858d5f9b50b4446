# The one test command (README, .ci/run): formatting, vet and the build
# scripts' own tests (tests/scripts_test.sh), the race-enabled test suite,
# a fuzz smoke run, the failure laboratory, real MCP clients and the
# console in a browser; one stage after another, with the time each took
# printed at the end (tests/stages.sh). Every stage runs even when an
# earlier one failed, and make test then fails.
GO ?= go

# make fuzz-smoke (part of make test): every fuzz target for
# FUZZ_SMOKE_TIME, from its seed corpus, each package's instrumented test
# binary built once (tests/fuzz.sh), coverage counters in this module's
# packages only. The seeds themselves also run as tests in make unit.
FUZZ_SMOKE_TIME ?= 3s
# make fuzz: the long run, for FUZZTIME per target, with every package
# instrumented as go test -fuzz does, and the corpus cache in $GOCACHE/fuzz
# kept between runs. Not part of make test.
FUZZTIME ?= 1m
# A new crasher is minimised within this bound, so that minimising cannot
# eat a target's whole run.
FUZZMINTIME ?= 5s

# package:FuzzTarget pairs; every parser and every untrusted input has one.
# A third :TIME is that target's time in the smoke run: FuzzStepInjection
# drives whole runs per input, and its seed baseline alone takes about 10 s
# on 2 cores.
FUZZ_TARGETS = \
	./internal/jsonvalue:FuzzDecode \
	./internal/jsonvalue:FuzzCanonical \
	./internal/schema:FuzzCompile \
	./internal/schema/fastpath:FuzzFastPath \
	./internal/policy:FuzzCompile \
	./internal/program:FuzzLoad \
	./internal/runtime:FuzzSubmit \
	./internal/runtime:FuzzDecide \
	./internal/runtime:FuzzToolResult \
	./internal/receipt:FuzzVerify \
	./internal/access:FuzzParseApprovers \
	./internal/access:FuzzParseTokens \
	./internal/access:FuzzBearer \
	./internal/executor:FuzzParseRegistry \
	./internal/jsonrpc:FuzzParse \
	./internal/tools:FuzzToolCall \
	./internal/tools:FuzzStepInjection:20s \
	./internal/analyzer:FuzzAnalyze \
	./internal/executor:FuzzMCPResult

.PHONY: test check unit fuzz-smoke fuzz lab bench bench-load build e2e browser soak

test:
	@MAKE="$(MAKE)" tests/stages.sh check unit fuzz-smoke lab e2e browser

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 -run '^(TestCoreIsPure|TestImpuritiesAreFound)$$' ./internal/runtime/
	@tests/scripts_test.sh

unit:
	$(GO) test -race -count=1 ./...

fuzz-smoke:
	@GO="$(GO)" FUZZ_INSTRUMENT=module FUZZ_FRESH_CACHE=1 \
		tests/fuzz.sh $(FUZZ_SMOKE_TIME) $(FUZZMINTIME) $(FUZZ_TARGETS)

# The per-target smoke times are dropped: every target gets FUZZTIME.
fuzz:
	@GO="$(GO)" tests/fuzz.sh $(FUZZTIME) $(FUZZMINTIME) \
		$(foreach t,$(FUZZ_TARGETS),$(word 1,$(subst :, ,$(t))):$(word 2,$(subst :, ,$(t))))

# The failure laboratory (docs/faults.md) on every embedded example
# (examples/*.yaml but the tool registries *.tools.yaml, the files
# examples/embed.go embeds as programs) and on a program
# shipped without answers, which it drives with synthesised ones; on each
# store in LAB_STORES: SQLite in a fresh data directory, and PostgreSQL at
# NANO_VM_TEST_PG_DSN in a fresh schema (psql creates it and drops it at
# the end). A schema of its own per invocation keeps laboratories sharing
# a database apart: a store's subject keys are wrapped under key-encryption
# keys kept in the data directory that first used it, here a throwaway one.
# Without PostgreSQL: make lab LAB_STORES=sqlite. A matrix with a mismatch
# (exit 5) or any other failure fails the make, and prints it.
LAB_BIN = .cache/lab/nano-vm-mcp
LAB_STORES ?= sqlite postgres
LAB_PROGRAMS = $(basename $(notdir $(filter-out %.tools.yaml,$(wildcard examples/*.yaml)))) internal/lab/testdata/expense-claim.yaml
LAB_PG_DSN = $${NANO_VM_TEST_PG_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}

lab:
	$(GO) build -o $(LAB_BIN) ./cmd/nano-vm-mcp
	@set -e; dir=$$(mktemp -d); pg="$(LAB_PG_DSN)"; schema=""; \
	cleanup() { \
		if [ -n "$$schema" ]; then PGOPTIONS=--client-min-messages=warning psql -q "$$pg" -c "DROP SCHEMA $$schema CASCADE" >/dev/null || true; fi; \
		rm -rf "$$dir"; \
	}; trap cleanup EXIT; \
	for store in $(LAB_STORES); do \
		dsn=""; \
		if [ "$$store" = postgres ]; then \
			command -v psql >/dev/null || { echo "make lab: psql is needed for a throwaway schema (or LAB_STORES=sqlite)"; exit 1; }; \
			schema=nano_vm_lab_$$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n'); \
			psql -q "$$pg" -c "CREATE SCHEMA $$schema" >/dev/null; \
			case "$$pg" in \
				postgres://*\?*|postgresql://*\?*) dsn="$$pg&search_path=$$schema";; \
				postgres://*|postgresql://*) dsn="$$pg?search_path=$$schema";; \
				*) dsn="$$pg search_path=$$schema";; \
			esac; \
		fi; \
		for p in $(LAB_PROGRAMS); do \
			printf 'lab %-45s %-8s ' "$$p" "$$store"; \
			rc=0; $(LAB_BIN) lab --program "$$p" --store "$$store" --data-dir "$$dir" --dsn "$$dsn" \
				>"$$dir/out" 2>"$$dir/err" || rc=$$?; \
			if [ $$rc -ne 0 ]; then echo "exit $$rc"; cat "$$dir/out" "$$dir/err"; exit 1; fi; \
			tail -n 1 "$$dir/out"; \
		done; \
	done

# The memory test at full size (docs/decisions.md, issue 13 item 7): 20,000
# abandoned legacy sessions and 5,000 runs against the real binary, whose
# RSS must grow less than 96 MiB. Not part of test: about 30 s on 2 cores;
# unit runs the same test at 4,000 and 1,000 with smaller bounds. And the
# durability tests of runtime tool calls (issue 15 section 5): 100 SIGKILLs
# while a call is in flight (unit: 20), and 1,000 runs across two servers
# on one PostgreSQL database (unit: 200); NANO_VM_TEST_KILL_SEED repeats a
# printed seed.
SOAK_TESTS = TestServeMemoryStaysBoundedUnderSessionsAndRuns|TestServeSIGKILLDuringToolCallsLosesNothing|TestServeTwoServersOnPostgresInvokeEachToolCallOnce
soak:
	NANO_VM_SOAK=1 $(GO) test -count=1 -timeout 30m -run '^($(SOAK_TESTS))$$' -v ./cmd/nano-vm-mcp

# Real MCP clients against the built server: the TypeScript SDK, the
# conformance suite and the Inspector CLI (tests/node/README.md). Installs
# Node 22 and the pinned npm packages into .cache/node/ on first use.
e2e:
	GO="$(GO)" tests/node/run.sh

# The web console in a real browser (tests/browser/README.md): Debian's
# chromium (/usr/bin/chromium; .ci/run installs it) driven by playwright-core
# from npm, installed into .cache/browser/ on first use. Screenshots of every
# page land in tests/browser/artifacts/; UPDATE_SCREENSHOTS=1 also refreshes
# the README's two in docs/images/.
browser:
	GO="$(GO)" tests/browser/run.sh

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/... ./cmd/...

# The many-agents load benchmark (issue 16; docs/performance.md, "Load:
# many agents"): the built server over Streamable HTTP on each store in
# LOAD_STORES, LOAD_C concurrent sessions of start_run + step for LOAD_TIME
# each, beside the reference server's echo (tests/bench/setup.sh installs
# it); PostgreSQL at NANO_VM_TEST_PG_DSN, in a fresh schema dropped at the
# end. About 3 minutes with the defaults. Not part of make test; its smoke
# test is, in unit. Without PostgreSQL: make bench-load
# LOAD_STORES=memory,sqlite. LOAD_FLAGS adds flags (-json, -warmup 5s, ...).
LOAD_BIN = .cache/load/nano-vm-mcp
LOAD_STORES ?= memory,sqlite,postgres
LOAD_C ?= 1,8,32,128
LOAD_TIME ?= 10s
LOAD_FLAGS ?=

bench-load:
	tests/bench/setup.sh
	$(GO) build -o $(LOAD_BIN) ./cmd/nano-vm-mcp
	$(GO) run ./tests/bench/load -bin $(LOAD_BIN) -stores $(LOAD_STORES) -c $(LOAD_C) -d $(LOAD_TIME) \
		-pg-dsn "$(LAB_PG_DSN)" $(LOAD_FLAGS)

build:
	$(GO) build -o nano-vm-mcp ./cmd/nano-vm-mcp
