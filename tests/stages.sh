#!/usr/bin/env bash
# Runs make targets one after another as the stages of make test, and ends
# with the time each one took and whether it passed.
#
#   tests/stages.sh STAGE...
#
# Every stage runs even when an earlier one failed, so one run shows every
# failure; the script then exits 1. Interrupted (SIGINT, SIGTERM), it still
# prints the table for the stages so far. MAKE names the make to call
# (the Makefile passes its own, so command-line variables carry over).
set -uo pipefail
[ $# -gt 0 ] || { echo "usage: tests/stages.sh STAGE..." >&2; exit 2; }
MAKE=${MAKE:-make}

stages=("$@")
declare -A result took
t0=$SECONDS

summary() {
	echo
	echo "=== make test: time per stage"
	local s failed=0
	for s in "${stages[@]}"; do
		[ -n "${result[$s]+x}" ] || continue
		printf '  %-12s %-16s %5ss\n' "$s" "${result[$s]}" "${took[$s]}"
		[ "${result[$s]}" = ok ] || failed=1
	done
	printf '  %-12s %-16s %5ss\n' total "" $((SECONDS - t0))
	return "$failed"
}

current=
interrupted() {
	[ -z "$current" ] || { result[$current]="interrupted"; took[$current]=$((SECONDS - start)); }
	summary
	exit 130
}
trap interrupted INT TERM

for s in "${stages[@]}"; do
	echo "=== make $s"
	current=$s start=$SECONDS rc=0
	"$MAKE" --no-print-directory "$s" || rc=$?
	took[$s]=$((SECONDS - start))
	if [ "$rc" = 0 ]; then result[$s]=ok; else result[$s]="FAIL (exit $rc)"; fi
	current=
done

if summary; then
	echo "make test: ok"
else
	echo "make test: FAILED"
	exit 1
fi
