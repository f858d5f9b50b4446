#!/usr/bin/env bash
# The end-to-end suite (make e2e): installs Node 22 and the npm packages
# (setup.sh), builds the server, then runs the three suites against it:
#
#   sdk-client   official TypeScript SDK client over stdio and Streamable HTTP
#   conformance  @modelcontextprotocol/conformance, with conformance-baseline.yml
#   inspector    MCP Inspector CLI over stdio and Streamable HTTP
#
# Every suite runs; the script fails if any of them failed.
#   tests/node/run.sh [sdk-client|conformance|inspector ...]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(sdk-client conformance inspector)

t0=$SECONDS
"$E2E_DIR/setup.sh"
log "go build -o ${NANO_VM_BIN#"$ROOT"/} ./cmd/nano-vm-mcp"
mkdir -p "$(dirname "$NANO_VM_BIN")"
"${GO:-go}" build -o "$NANO_VM_BIN" ./cmd/nano-vm-mcp
"$NANO_VM_BIN" serve --help >/dev/null 2>&1 || die "$NANO_VM_BIN has no serve command"
log "setup and build: $((SECONDS - t0))s"

declare -A result took
for s in "${suites[@]}"; do
	log "=== $s"
	t=$SECONDS
	rc=0
	case $s in
	sdk-client) with_home node --test --test-reporter=spec "$E2E_DIR/sdk-client.test.mjs" || rc=$? ;;
	conformance) "$E2E_DIR/conformance.sh" || rc=$? ;;
	inspector) "$E2E_DIR/inspector.sh" || rc=$? ;;
	*) die "unknown suite $s (sdk-client, conformance, inspector)" ;;
	esac
	took[$s]=$((SECONDS - t))
	if [ "$rc" = 0 ]; then result[$s]=PASS; else result[$s]="FAIL (exit $rc)"; fi
done

log "=== summary"
failed=0
for s in "${suites[@]}"; do
	log "$(printf '%-12s %-14s %3ss' "$s" "${result[$s]}" "${took[$s]}")"
	[ "${result[$s]}" = PASS ] || failed=1
done
log "total $((SECONDS - t0))s"
[ "$failed" = 0 ] || die "e2e: a suite failed (see above)"
log "e2e ok"
