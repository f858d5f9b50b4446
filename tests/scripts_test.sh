#!/usr/bin/env bash
# Tests for the build scripts (make check runs it): tests/stages.sh against
# a throwaway Makefile, and tests/fuzz.sh against a fake go command whose
# "test binaries" print what a Go 1.26 fuzz run prints, so that the retry
# rule is checked without building or fuzzing anything.
#
#   tests/scripts_test.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/nano-vm-scripts-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect NAME WANT_RC GOT_RC OUTPUT_FILE PATTERN...: the exit code, and each
# extended regular expression matching a line of the output.
expect() {
	local name=$1 want=$2 got=$3 out=$4 p
	shift 4
	[ "$got" = "$want" ] || fail "$name: exit $got, want $want"
	for p in "$@"; do
		grep -Eq -- "$p" "$out" || fail "$name: no line matches /$p/"
	done
}

# --- tests/stages.sh -------------------------------------------------------
mkdir -p "$work/stages"
cat >"$work/stages/Makefile" <<'EOF'
one:
	@echo ran one >>log
two:
	@echo ran two >>log; exit 3
three:
	@echo ran three >>log
EOF
(cd "$work/stages" && "$here/stages.sh" one two three) >"$work/out" 2>&1
expect "stages: a failing stage" 1 $? "$work/out" \
	'^=== make test: time per stage$' \
	'^  one +ok +[0-9]+s$' \
	'^  two +FAIL \(exit 2\) +[0-9]+s$' \
	'^  three +ok +[0-9]+s$' \
	'^  total +[0-9]+s$' \
	'^make test: FAILED$'
[ "$(cat "$work/stages/log")" = "ran one
ran two
ran three" ] || fail "stages: every stage runs after a failure, in order; ran: $(tr '\n' ' ' <"$work/stages/log")"

(cd "$work/stages" && "$here/stages.sh" one three) >"$work/out" 2>&1
expect "stages: all pass" 0 $? "$work/out" '^  one +ok' '^  three +ok' '^make test: ok$'

# --- tests/fuzz.sh ---------------------------------------------------------
# The fake go: `list`, `env GOCACHE` and `test -c -o BIN` (which writes a
# script as the test binary). The binary logs its arguments and directory,
# then plays the next line of $FAKE_PLAN/TARGET: ok, deadline (the bare
# error of go.dev/issue/75804), crash (a failing input) or panic.
fake=$work/fake
mkdir -p "$fake/bin" "$fake/pkg" "$fake/cache"
cat >"$fake/bin/go" <<'EOF'
#!/usr/bin/env bash
case "$1 $2" in
"list -m") echo example.com/fake ;;
"list -f") echo "example.com/fake/${4#./} $FAKE_DIR" ;;
"env GOCACHE") echo "$FAKE_CACHE" ;;
"test -c")
	echo "go $*" >>"$FAKE_LOG"
	cat >"$4" <<'BIN'
#!/usr/bin/env bash
fn=; for a in "$@"; do case $a in -test.fuzz=*) fn=${a#-test.fuzz=^}; fn=${fn%\$} ;; esac; done
echo "run $PWD $*" >>"$FAKE_LOG"
plan=$FAKE_PLAN/$fn
step=$(head -n 1 "$plan"); sed -i 1d "$plan"
case $step in
ok) echo PASS; exit 0 ;;
deadline) printf -- '--- FAIL: %s (3.01s)\n    context deadline exceeded\nFAIL\n' "$fn"; exit 1 ;;
crash) printf -- '--- FAIL: %s (0.10s)\n    Failing input written to testdata/fuzz/%s/abc\nFAIL\n' "$fn" "$fn"; exit 1 ;;
panic) printf 'panic: boom\n\ncontext deadline exceeded\n'; exit 2 ;;
esac
BIN
	chmod +x "$4" ;;
*) echo "fake go: unexpected $*" >&2; exit 9 ;;
esac
EOF
chmod +x "$fake/bin/go"
export FAKE_DIR=$fake/pkg FAKE_CACHE=$fake/cache FAKE_PLAN=$fake/plan FAKE_LOG=$fake/log

# fuzz PLAN... -- ARGS...: plans (TARGET=step,step) then tests/fuzz.sh ARGS.
fuzz() {
	rm -rf "$FAKE_PLAN" "$FAKE_LOG"
	mkdir -p "$FAKE_PLAN"
	while [ "$1" != -- ]; do
		tr , '\n' <<<"${1#*=}" >"$FAKE_PLAN/${1%%=*}"
		shift
	done
	shift
	GO=$fake/bin/go "$here/fuzz.sh" "$@" >"$work/out" 2>&1
}
runs() { grep -c "^run .*-test.fuzz=^$1\\$ " "$FAKE_LOG"; }

fuzz FuzzA=ok FuzzB=ok FuzzC=ok -- 3s 5s ./p:FuzzA ./p:FuzzB:20s ./q:FuzzC
expect "fuzz: all pass" 0 $? "$work/out" '^fuzz: ok \(2 packages, 3 targets\)$' '^fuzz \./p FuzzB \(20s\)$'
[ "$(grep -c '^go test -c' "$FAKE_LOG")" = 2 ] || fail "fuzz: one build per package, got $(grep -c '^go test -c' "$FAKE_LOG")"
grep -q "^run $FAKE_DIR -test.run=^\\$ -test.fuzz=^FuzzB\\$ -test.fuzztime=20s -test.fuzzminimizetime=5s -test.fuzzcachedir=$FAKE_CACHE/fuzz/example.com/fake/p -test.paniconexit0$" "$FAKE_LOG" ||
	fail "fuzz: FuzzB not run from the package directory with its own time and go test's corpus cache: $(grep FuzzB "$FAKE_LOG")"
grep -q '^go test -c -o .* -fuzz=\. \./p$' "$FAKE_LOG" || fail "fuzz: the default build is not go test -fuzz's instrumentation: $(grep '^go' "$FAKE_LOG")"

FUZZ_INSTRUMENT=module FUZZ_FRESH_CACHE=1 fuzz FuzzA=ok -- 3s 5s ./p:FuzzA
expect "fuzz: module instrumentation, fresh cache" 0 $? "$work/out"
grep -q '^go test -c -o .* -gcflags=example.com/fake/\.\.\.=-d=libfuzzer \./p$' "$FAKE_LOG" || fail "fuzz: module instrumentation: $(grep '^go' "$FAKE_LOG")"
grep -q -- "-test.fuzzcachedir=$FAKE_CACHE/" "$FAKE_LOG" && fail "fuzz: FUZZ_FRESH_CACHE=1 still used \$GOCACHE/fuzz"

fuzz FuzzA=deadline,deadline,ok FuzzB=ok -- 3s 5s ./p:FuzzA ./p:FuzzB
expect "fuzz: the bare deadline error is retried" 0 $? "$work/out" "go.dev/issue/75804.*attempt 2$"
[ "$(runs FuzzA)" = 3 ] || fail "fuzz: FuzzA ran $(runs FuzzA) times, want 3"

fuzz FuzzA=deadline,deadline,deadline FuzzB=ok -- 3s 5s ./p:FuzzA ./p:FuzzB
expect "fuzz: three bare deadline errors fail" 1 $? "$work/out" '^fuzz: FAILED: \./p FuzzA$'
[ "$(runs FuzzA)" = 3 ] || fail "fuzz: FuzzA ran $(runs FuzzA) times, want 3"
[ "$(runs FuzzB)" = 1 ] || fail "fuzz: the next target did not run after a failure"

fuzz FuzzA=crash,ok -- 3s 5s ./p:FuzzA
expect "fuzz: a failing input fails at once" 1 $? "$work/out" '^fuzz: FAILED: \./p FuzzA$'
[ "$(runs FuzzA)" = 1 ] || fail "fuzz: a failing input was retried"

fuzz FuzzA=panic,ok -- 3s 5s ./p:FuzzA
expect "fuzz: a panic fails at once" 1 $? "$work/out" '^fuzz: FAILED: \./p FuzzA$'
[ "$(runs FuzzA)" = 1 ] || fail "fuzz: a panic was retried"

if [ "$failures" -gt 0 ]; then
	echo "tests/scripts_test.sh: $failures failure(s)"
	exit 1
fi
echo "tests/scripts_test.sh: ok"
