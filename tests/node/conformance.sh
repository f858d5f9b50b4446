#!/usr/bin/env bash
# Runs @modelcontextprotocol/conformance 0.1.16 (active suite) against
# `nano-vm-mcp serve --transport http --store memory` on a free loopback
# port, with conformance-baseline.yml as the expected failures.
#
# Prints the verdict first, then every scenario, the baseline's failures
# marked expected (conformance-summary.mjs).
#
# Passes when: the runner's baseline check passes (no failure outside the
# baseline, no stale entry), AND every generic scenario passed all of its
# checks, AND the runner's exit code really reflects the baseline (checked
# by re-running with a baseline that has one entry too few and one too many).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_node
need_bin

GENERIC=(server-initialize ping logging-set-level tools-list resources-list server-sse-multiple-streams dns-rebinding-protection)
BASELINE=$E2E_DIR/conformance-baseline.yml

work=$(mktemp -d "${TMPDIR:-/tmp}/nano-vm-conformance.XXXXXX")
trap 'stop_server; rm -rf "$work"' EXIT
mkdir -p "$work/data"

start_http_server "$work/server.log" --store memory --data-dir "$work/data"
log "conformance $(node -p 'require(process.argv[1]).version' "$DEPS/node_modules/@modelcontextprotocol/conformance/package.json") against $SERVER_URL (server pid $SERVER_PID)"

# run_suite BASELINE OUTDIR: the whole active suite; prints the runner's rc.
run_suite() {
	local rc=0
	with_home conformance server --url "$SERVER_URL" --expected-failures "$1" -o "$2" >"$2.txt" 2>&1 || rc=$?
	echo "$rc"
}

# The summary's own tests, on captured runner output.
node --test --test-reporter=dot "$E2E_DIR/conformance-summary.test.mjs" >&2 || die "conformance-summary.test.mjs failed"

rc=$(run_suite "$BASELINE" "$work/results")
fail=0
# The verdict first, then every scenario with the baseline's failures
# marked expected; the runner's own output (whose summary counts the
# expected failures as failed before it says they are expected) is shown
# when something failed, or with E2E_DEBUG=1.
node "$E2E_DIR/conformance-summary.mjs" "$work/results.txt" "$rc" "$(basename "$BASELINE")" || fail=1

# Every generic scenario ran and every one of its checks is SUCCESS.
node - "$work/results" "${GENERIC[@]}" <<'JS' || fail=1
const fs = require('fs'), path = require('path');
const [dir, ...generic] = process.argv.slice(2);
const dirs = fs.readdirSync(dir);
let bad = 0;
for (const s of generic) {
  const d = dirs.find((x) => x === `server-${s}` || x.startsWith(`server-${s}-`));
  if (!d) { console.error(`[e2e] generic scenario ${s}: no results`); bad++; continue; }
  const checks = JSON.parse(fs.readFileSync(path.join(dir, d, 'checks.json'), 'utf8'));
  const notOk = checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING');
  const passed = checks.filter((c) => c.status === 'SUCCESS').length;
  if (passed === 0 || notOk.length > 0) {
    bad++;
    console.error(`[e2e] generic scenario ${s} did not pass:`);
    for (const c of notOk) console.error(`  ${c.status} ${c.name}: ${c.errorMessage ?? c.description}`);
  } else {
    console.error(`[e2e] generic scenario ${s}: ${passed} checks passed`);
  }
}
process.exit(bad ? 1 : 0);
JS

# The exit code must enforce the baseline both ways: dropping an entry (an
# unexpected failure) and adding a passing scenario (a stale entry) fail.
if [ "$fail" = 0 ]; then
	first=$(grep -m1 -E '^  - ' "$BASELINE" | sed 's/^  - //')
	grep -v -x -F "  - $first" "$BASELINE" >"$work/short.yml"
	{ cat "$BASELINE"; echo "  - ping"; } >"$work/stale.yml"
	rc_short=$(run_suite "$work/short.yml" "$work/short")
	rc_stale=$(run_suite "$work/stale.yml" "$work/stale")
	if [ "$rc_short" = 0 ] || ! grep -q "Unexpected failures" "$work/short.txt"; then
		log "baseline without '$first' should fail as an unexpected failure, runner exited $rc_short"
		fail=1
	fi
	if [ "$rc_stale" = 0 ] || ! grep -q "Stale baseline entries" "$work/stale.txt"; then
		log "baseline with a passing scenario (ping) should fail as stale, runner exited $rc_stale"
		fail=1
	fi
	[ "$fail" = 1 ] || log "rc semantics ok: missing entry -> rc=$rc_short, stale entry -> rc=$rc_stale"
fi

if [ "$fail" != 0 ] || [ -n "${E2E_DEBUG:-}" ]; then
	log "the conformance runner's output:"
	sed 's/^/  | /' "$work/results.txt" >&2
fi
if [ "$fail" != 0 ]; then
	log "server log:"
	sed 's/^/  | /' "$work/server.log" >&2
	die "conformance"
fi
log "conformance ok"
