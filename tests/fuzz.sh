#!/usr/bin/env bash
# Runs fuzz targets, each for a bounded time (make fuzz-smoke, make fuzz).
#
#   tests/fuzz.sh FUZZTIME FUZZMINTIME PACKAGE:TARGET[:FUZZTIME]...
#
# A target's own :FUZZTIME wins over the first argument. Each package's
# fuzz-instrumented test binary is built once (go test -c) and run once per
# target with -test.fuzz, from the package's directory and with go test's
# corpus cache ($GOCACHE/fuzz/IMPORTPATH), as `go test -fuzz` would: one
# go command and one link per package instead of one per target.
#
# FUZZ_INSTRUMENT chooses what carries the coverage counters that guide
# the mutator:
#   all     (default) every package in the binary except the few that go
#           test -fuzz leaves out (runtime, sync, testing, ...): the same
#           binary as `go test -fuzz`.
#   module  this module's packages only (-gcflags=MODULE/...=-d=libfuzzer).
#           The dependencies are then compiled as for `go build`, so the
#           build shares them with make lab, e2e and browser instead of
#           compiling cel-go, SQLite, pgx and the rest a third time with
#           counters. make fuzz-smoke uses it (docs/decisions.md).
#
# FUZZ_FRESH_CACHE=1 starts every target from its seed corpus (f.Add and
# testdata/fuzz) in a throwaway corpus cache instead of $GOCACHE/fuzz, so
# that a short run does not spend its budget re-running inputs that earlier
# long runs collected, and runs the same on every machine. make fuzz-smoke
# sets it; make fuzz keeps and grows the cache.
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# when -fuzztime expires while a worker is mid-call (go.dev/issue/75804,
# fixed in Go 1.27): no input failed and none is written. Such a run is
# retried, up to three attempts in all (two in a row have been seen in
# CI). Anything else fails: a failing input (always written to
# testdata/fuzz/), a panic, or the same bare error three times in a row.
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: tests/fuzz.sh FUZZTIME FUZZMINTIME PACKAGE:TARGET[:FUZZTIME]..." >&2; exit 2; }
fuzztime=$1 mintime=$2
shift 2
GO=${GO:-go}

work=$(mktemp -d "${TMPDIR:-/tmp}/nano-vm-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/log

# Packages in first-seen order, and each one's targets.
pkgs=()
declare -A targets
for t in "$@"; do
	pkg=${t%%:*}
	[ -n "${targets[$pkg]+x}" ] || pkgs+=("$pkg")
	targets[$pkg]+="${t#*:} "
done

case ${FUZZ_INSTRUMENT:-all} in
all) instrument=(-fuzz=.) ;;
module) instrument=("-gcflags=$("$GO" list -m)/...=-d=libfuzzer") ;;
*) echo "FUZZ_INSTRUMENT must be all or module, not ${FUZZ_INSTRUMENT}" >&2; exit 2 ;;
esac
cachedir=$("$GO" env GOCACHE)/fuzz
[ "${FUZZ_FRESH_CACHE:-}" != 1 ] || cachedir=$work/corpus-cache

# fuzz_once DIR BIN IMPORTPATH TARGET TIME: one run, its output in $log.
fuzz_once() {
	(cd "$1" && "$2" -test.run='^$' -test.fuzz="^$4\$" -test.fuzztime="$5" \
		-test.fuzzminimizetime="$mintime" -test.fuzzcachedir="$cachedir/$3" \
		-test.paniconexit0) 2>&1 | tee "$log"
	return "${PIPESTATUS[0]}"
}

failed=()
summary=()
for pkg in "${pkgs[@]}"; do
	read -r importpath dir < <("$GO" list -f '{{.ImportPath}} {{.Dir}}' "$pkg") || { failed+=("$pkg (go list)"); continue; }
	bin=$work/pkg${#summary[@]}.test # unique: two packages may share a base name
	t0=$SECONDS
	echo "fuzz build $pkg (instrument: ${FUZZ_INSTRUMENT:-all})"
	if ! "$GO" test -c -o "$bin" "${instrument[@]}" "$pkg"; then
		failed+=("$pkg (build)")
		continue
	fi
	summary+=("$(printf '%-28s %-22s %4ss' "$pkg" build $((SECONDS - t0)))")
	for spec in ${targets[$pkg]}; do
		fn=${spec%%:*} time=$fuzztime
		case $spec in *:*) time=${spec#*:} ;; esac
		t0=$SECONDS
		echo "fuzz $pkg $fn ($time)"
		ok=0
		for attempt in 1 2 3; do
			if fuzz_once "$dir" "$bin" "$importpath" "$fn" "$time"; then
				ok=1
				break
			fi
			if grep -q 'Failing input written to' "$log" || ! grep -q 'context deadline exceeded' "$log" || grep -q 'panic:' "$log"; then
				break
			fi
			echo "fuzz $pkg $fn: bare 'context deadline exceeded' at the -fuzztime boundary (go.dev/issue/75804), no failing input; attempt $attempt"
		done
		summary+=("$(printf '%-28s %-22s %4ss' "$pkg" "$fn" $((SECONDS - t0)))")
		[ "$ok" = 1 ] || failed+=("$pkg $fn")
	done
	rm -f "$bin"
done

echo "fuzz: time per build and target"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}"
	exit 1
fi
echo "fuzz: ok (${#pkgs[@]} packages, $# targets)"
