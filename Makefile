# The one test command (README, .ci/run): formatting, vet, the race-enabled
# test suite, and a short run of every fuzz target.
GO ?= go
FUZZTIME ?= 10s

# package:FuzzTarget pairs; every parser and every untrusted input has one.
FUZZ_TARGETS = \
	./internal/jsonvalue:FuzzDecode \
	./internal/schema:FuzzCompile \
	./internal/schema:FuzzFastPath \
	./internal/policy:FuzzCompile \
	./internal/program:FuzzLoad \
	./internal/runtime:FuzzSubmit \
	./internal/receipt:FuzzVerify

.PHONY: test check unit fuzz bench build

test: check unit fuzz

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
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/...

build:
	$(GO) build -o nano-vm-mcp ./cmd/nano-vm-mcp
