#!/usr/bin/env bash
# Installs, idempotently, the reference server that the benchmarks in
# cmd/nano-vm-mcp/bench_test.go and the load benchmark (tests/bench/load,
# make bench-load) measure a governed step against: the
# official @modelcontextprotocol/server-everything (its no-op `echo` tool),
# with `npm ci --ignore-scripts` from package.json and the committed
# package-lock.json, into the git-ignored .cache/bench/. It then starts the
# server in stdio mode and checks that it answers `echo`.
#
# The machine's own Node runs it (Node 20 or newer; server-everything
# 2026.8.31 and all its dependencies run on Node 20).
# NANO_VM_BENCH_NODE=/path/to/node chooses another one, here and in the
# benchmark alike (default: node on PATH).
#
#   tests/bench/setup.sh                 install (no-op when up to date)
#   tests/bench/setup.sh --update-lock   npm install, then copy the new
#                                        package-lock.json back to tests/bench
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
CACHE=$ROOT/.cache/bench
ENTRY=$CACHE/node_modules/@modelcontextprotocol/server-everything/dist/index.js

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FAIL: %s\n' "$*" >&2; exit 1; }

update_lock=false
case "${1:-}" in
"") ;;
--update-lock) update_lock=true ;;
*) die "usage: $0 [--update-lock]" ;;
esac

NODE=${NANO_VM_BENCH_NODE:-$(command -v node || true)}
[ -n "$NODE" ] && [ -x "$NODE" ] || die "Node 20 or newer is needed (node on PATH, or NANO_VM_BENCH_NODE=/path/to/node)"
major=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "$NODE is Node $("$NODE" --version); server-everything needs Node 20 or newer"
command -v npm >/dev/null || die "npm is needed"
NPM_CLI=$(readlink -f "$(command -v npm)")

mkdir -p "$CACHE"
# One setup at a time.
if command -v flock >/dev/null; then
	exec 9>"$CACHE/.setup.lock"
	flock 9
fi
# npm: cache and logs inside .cache/bench, no update check, audit or fund calls.
export npm_config_cache=$CACHE/npm-cache
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

# stamp identifies an install: the manifest, the lockfile and the Node.
stamp() {
	{
		cat "$BENCH_DIR/package.json"
		[ ! -f "$BENCH_DIR/package-lock.json" ] || cat "$BENCH_DIR/package-lock.json"
	} | sha256sum | cut -d' ' -f1 | sed "s/\$/-node$major/"
}

s=$(stamp)
if $update_lock || ! [ -f "$CACHE/.stamp" ] || [ "$(cat "$CACHE/.stamp")" != "$s" ] || ! [ -f "$ENTRY" ]; then
	rm -f "$CACHE/.stamp"
	cp "$BENCH_DIR/package.json" "$CACHE/package.json"
	if $update_lock; then
		log "npm install (updating tests/bench/package-lock.json)"
		[ ! -f "$BENCH_DIR/package-lock.json" ] || cp "$BENCH_DIR/package-lock.json" "$CACHE/package-lock.json"
		(cd "$CACHE" && "$NODE" "$NPM_CLI" install --ignore-scripts --no-audit --no-fund --loglevel=error)
		cp "$CACHE/package-lock.json" "$BENCH_DIR/package-lock.json"
		s=$(stamp)
	else
		[ -f "$BENCH_DIR/package-lock.json" ] || die "tests/bench/package-lock.json is missing; run $0 --update-lock"
		log "npm ci (tests/bench/package-lock.json) into ${CACHE#"$ROOT"/}"
		cp "$BENCH_DIR/package-lock.json" "$CACHE/package-lock.json"
		# No install scripts: only the package's JavaScript runs.
		(cd "$CACHE" && "$NODE" "$NPM_CLI" ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	fi
	echo "$s" >"$CACHE/.stamp"
fi

[ -f "$ENTRY" ] || die "no $ENTRY after the install"
# Start it the way the benchmark does (node ENTRY stdio) and call echo.
"$NODE" "$BENCH_DIR/check-echo.mjs" "$ENTRY" || die "server-everything did not answer echo over stdio"
log "setup ok: server-everything $("$NODE" -p 'require(process.argv[1]).version' "$CACHE/node_modules/@modelcontextprotocol/server-everything/package.json") on Node $("$NODE" --version) at ${ENTRY#"$ROOT"/}"
log "run: go test -run '^\$' -bench . -benchtime 2000x -count 6 ./cmd/nano-vm-mcp"
log "or:  make bench-load"
