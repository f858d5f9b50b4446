#!/usr/bin/env bash
# The console's end-to-end tests in a real browser (make browser): Debian's
# chromium, driven by playwright-core from npm, against a freshly built
# `nano-vm-mcp serve --transport http` with the embedded SQLite store in a
# throwaway data directory. See README.md.
#
#   tests/browser/run.sh                      install, build, serve, test
#   UPDATE_SCREENSHOTS=1 tests/browser/run.sh also copy the top 1400 pixels
#                                             of the run page and of the lab
#                                             into docs/images/ for the README
#   tests/browser/run.sh --update-lock        npm install, then copy the new
#                                             package-lock.json back here
#
# Screenshots of every page, and the server's log, land in the git-ignored
# tests/browser/artifacts/ (or $BROWSER_ARTIFACTS).
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$DIR/../.." && pwd)
CACHE=$ROOT/.cache/browser
DEPS=$CACHE/deps
BIN=$CACHE/nano-vm-mcp
ARTIFACTS=${BROWSER_ARTIFACTS:-$DIR/artifacts}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

log() { printf '[browser] %s\n' "$*" >&2; }
die() { printf '[browser] FAIL: %s\n' "$*" >&2; exit 1; }

update_lock=false
case "${1:-}" in
"") ;;
--update-lock) update_lock=true ;;
*) die "usage: $0 [--update-lock]" ;;
esac

t0=$SECONDS
[ -x "$CHROMIUM" ] || die "no chromium at $CHROMIUM: apt-get install chromium (Debian's package; .ci/run installs it)"
command -v npm >/dev/null || die "npm is needed to install playwright-core from the registry"
NPM_CLI=$(readlink -f "$(command -v npm)")

# Node: the Node 22 that tests/node/setup.sh keeps in .cache/node when it is
# there, else the machine's; playwright-core needs Node 20 or later.
for d in "$ROOT"/.cache/node/node-v22.*-linux-x64/bin; do
	if [ -x "$d/node" ]; then PATH="$d:$PATH"; break; fi
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	die "Node $(node --version) is too old: playwright-core needs Node 20 or later"

# npm and the browser write below .cache/browser, never into $HOME.
export npm_config_cache=$CACHE/npm-cache
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
with_home() {
	mkdir -p "$CACHE/home"
	HOME=$CACHE/home XDG_CONFIG_HOME=$CACHE/home/.config XDG_CACHE_HOME=$CACHE/home/.cache \
		XDG_DATA_HOME=$CACHE/home/.local/share XDG_STATE_HOME=$CACHE/home/.local/state "$@"
}
# playwright-core drives the machine's chromium: it must never fetch a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# playwright-core, exactly as package-lock.json pins it, into .cache/browser/deps
# (no install scripts: it needs none), once per change of the two files.
stamp=$(cat "$DIR/package.json" "$DIR/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
if $update_lock || [ ! -d "$DEPS/node_modules/playwright-core" ] || [ "$(cat "$DEPS/.stamp" 2>/dev/null)" != "$stamp" ]; then
	mkdir -p "$DEPS"
	rm -f "$DEPS/.stamp"
	cp "$DIR/package.json" "$DEPS/package.json"
	if $update_lock; then
		log "npm install (updating tests/browser/package-lock.json)"
		[ ! -f "$DIR/package-lock.json" ] || cp "$DIR/package-lock.json" "$DEPS/package-lock.json"
		(cd "$DEPS" && node "$NPM_CLI" install --ignore-scripts --no-audit --no-fund --loglevel=error)
		cp "$DEPS/package-lock.json" "$DIR/package-lock.json"
		stamp=$(cat "$DIR/package.json" "$DIR/package-lock.json" | sha256sum | cut -d' ' -f1)
	else
		[ -f "$DIR/package-lock.json" ] || die "tests/browser/package-lock.json is missing; run $0 --update-lock"
		log "npm ci (tests/browser/package-lock.json) into ${DEPS#"$ROOT"/}"
		cp "$DIR/package-lock.json" "$DEPS/package-lock.json"
		(cd "$DEPS" && node "$NPM_CLI" ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	fi
	echo "$stamp" >"$DEPS/.stamp"
fi
# console.test.mjs imports playwright-core by name: resolve it from here.
ln -sfn ../../.cache/browser/deps/node_modules "$DIR/node_modules"

log "go build -o ${BIN#"$ROOT"/} ./cmd/nano-vm-mcp"
(cd "$ROOT" && "${GO:-go}" build -o "$BIN" ./cmd/nano-vm-mcp)
log "node $(node --version), playwright-core $(node -p 'require(process.argv[1]).version' "$DEPS/node_modules/playwright-core/package.json"), $("$CHROMIUM" --version 2>/dev/null | head -n1); setup and build: $((SECONDS - t0))s"

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
data=$(mktemp -d "${TMPDIR:-/tmp}/nano-vm-browser.XXXXXX")
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$data"
}
trap cleanup EXIT

# The operator token is fresh for every run; no access token: the server
# listens on loopback only. With the operator token set, the console asks
# every visitor for a credential.
OPERATOR_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})')
NANO_VM_OPERATOR_TOKEN=$OPERATOR_TOKEN "$BIN" serve --transport http --addr "127.0.0.1:$port" \
	--store sqlite --data-dir "$data" >"$ARTIFACTS/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
	kill -0 "$server_pid" 2>/dev/null || { cat "$ARTIFACTS/server.log" >&2; die "the server exited before listening"; }
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "the server did not listen on 127.0.0.1:$port within 10s"
log "serving http://127.0.0.1:$port/ui"

t=$SECONDS
rc=0
CONSOLE_URL=http://127.0.0.1:$port OPERATOR_TOKEN=$OPERATOR_TOKEN ARTIFACTS=$ARTIFACTS CHROMIUM=$CHROMIUM \
	with_home node --test --test-reporter=spec --test-concurrency=1 "$DIR/console.test.mjs" || rc=$?
log "tests: $((SECONDS - t))s; screenshots in ${ARTIFACTS#"$ROOT"/}"

if [ "${UPDATE_SCREENSHOTS:-}" = 1 ]; then
	mkdir -p "$ROOT/docs/images"
	for pair in run-view.png:console-run.png lab-view.png:console-lab.png; do
		if [ -f "$ARTIFACTS/${pair%%:*}" ]; then
			cp "$ARTIFACTS/${pair%%:*}" "$ROOT/docs/images/${pair#*:}"
			log "updated docs/images/${pair#*:}"
		else
			log "no ${pair%%:*} taken: docs/images/${pair#*:} left as it was"
		fi
	done
fi

log "total $((SECONDS - t0))s"
[ "$rc" = 0 ] || die "browser tests failed (exit $rc)"
log "browser ok"
