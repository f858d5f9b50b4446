#!/usr/bin/env bash
# Drives `nano-vm-mcp serve` with the MCP Inspector CLI
# (@modelcontextprotocol/inspector 2.12.0, `mcp-inspector --cli`), the tool a
# developer uses by hand, and checks its exit codes (0 ok, 5 for an isError
# tool result) and the JSON it prints.
#
# Every stdio call spawns a fresh server, so the start_run -> step chain uses
# --store sqlite in a temporary --data-dir; tools/list and the unknown-run
# check use --store memory. One HTTP server (--store memory) covers the
# Inspector's Streamable HTTP transport, in the legacy and the modern
# (2026-07-28, stateless) protocol era.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_node
need_bin

work=$(mktemp -d "${TMPDIR:-/tmp}/nano-vm-inspector.XXXXXX")
trap 'stop_server; rm -rf "$work"' EXIT
mkdir -p "$work/sqlite" "$work/mem"
MEM=("$NANO_VM_BIN" serve --store memory --data-dir "$work/mem")
SQL=("$NANO_VM_BIN" serve --store sqlite --data-dir "$work/sqlite")
failures=0

# inspect WANT_RC NAME INSPECTOR_ARGS...: runs `mcp-inspector --cli ARGS
# --format json -q`, keeps stdout in $work/NAME.json, checks the exit code.
inspect() {
	local want=$1 name=$2 rc=0
	shift 2
	with_home mcp-inspector --cli --format json -q "$@" >"$work/$name.json" 2>"$work/$name.err" || rc=$?
	if [ "$rc" != "$want" ]; then
		log "FAIL $name: exit $rc, want $want"
		sed 's/^/  out| /' "$work/$name.json" | cut -c1-2000 >&2
		sed 's/^/  err| /' "$work/$name.err" | cut -c1-2000 >&2
		failures=$((failures + 1))
		return 1
	fi
	log "ok   $name (exit $rc)"
}

# check NAME JS: evaluates the JavaScript expression JS with `r` bound to
# the parsed output of NAME and `body` to the error JSON of an isError
# result (its first text content); fails unless JS is true.
check() {
	local name=$1 expr=$2
	if ! node -e '
		const fs = require("fs");
		const [file, expr] = process.argv.slice(1);
		let r;
		try { r = JSON.parse(fs.readFileSync(file, "utf8")); } catch { console.error("  no JSON on stdout"); process.exit(1); }
		let body;
		try { body = JSON.parse(r.result.content[0].text); } catch {}
		const ok = new Function("r", "body", `return (${expr});`)(r, body);
		if (!ok) { console.error(`  check failed: ${expr}`); console.error("  output: " + JSON.stringify(r).slice(0, 2000)); process.exit(1); }
	' "$work/$name.json" "$expr"; then
		log "FAIL $name: $expr"
		failures=$((failures + 1))
		return 1
	fi
}

# jget NAME JS: prints the value of the JavaScript expression JS (r bound
# to the parsed output of NAME).
jget() {
	node -e '
		const fs = require("fs");
		const [file, expr] = process.argv.slice(1);
		const r = JSON.parse(fs.readFileSync(file, "utf8"));
		const v = new Function("r", `return (${expr});`)(r);
		if (v === undefined) process.exit(1);
		process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));
	' "$work/$1.json" "$2"
}

# json JS: prints the JSON of a JavaScript expression over the examples
# (`input(name)` and `answers(name)` read files in examples/).
json() {
	node -e '
		const fs = require("fs"), path = require("path");
		const ex = path.join(process.argv[1], "examples");
		const input = (n) => JSON.parse(fs.readFileSync(path.join(ex, n), "utf8"));
		const answers = (n) => fs.readFileSync(path.join(ex, n), "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
		process.stdout.write(JSON.stringify(new Function("input", "answers", `return (${process.argv[2]});`)(input, answers)));
	' "$ROOT" "$1"
}

AGENT_TOOLS='["list_programs","start_run","step","get_run","get_receipt","verify_receipt","replay_run","inject_fault","cancel_run","await_approval","list_runs"]'
TOOLS_OK='(() => { const ts = r.result.tools, names = ts.map((t) => t.name);
	return '"$AGENT_TOOLS"'.every((n) => names.includes(n)) && !names.includes("approve") && !names.includes("list_approvals") &&
		ts.every((t) => t.inputSchema?.type === "object" && t.outputSchema?.type === "object" &&
			["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"].every((h) => typeof t.annotations?.[h] === "boolean")); })()'
REFUND_START=$(json '({program: "refund", input: input("refund.input.json")})')
REFUND_ANSWER=$(json 'answers("refund.refunded.answers.jsonl")[0]')

# --- stdio ------------------------------------------------------------------
log "stdio: $(basename "$NANO_VM_BIN") serve --store memory"
inspect 0 list --method tools/list -- "${MEM[@]}" && check list "$TOOLS_OK"
inspect 0 list-strict --method tools/list --strict -- "${MEM[@]}"

log "stdio: start_run -> step through --store sqlite --data-dir (one server per call)"
if inspect 0 start --method tools/call --tool-name start_run --tool-args-json "$REFUND_START" -- "${SQL[@]}" &&
	check start 'r.result.isError !== true && r.result.structuredContent.status === "running" && r.result.structuredContent.task.state === "assess_refund"'; then
	run_id=$(jget start 'r.result.structuredContent.run_id')
	seq=$(jget start 'r.result.structuredContent.task.seq')
	log "     run_id=$run_id seq=$seq"

	inspect 5 step-stale --method tools/call --tool-name step \
		--tool-args-json "{\"run_id\":\"$run_id\",\"seq\":$((seq + 7)),\"output\":$REFUND_ANSWER}" -- "${SQL[@]}" &&
		check step-stale 'r.result.isError === true && r.result.structuredContent === undefined && body.code === "stale_seq" && body.task.seq === '"$seq"

	inspect 0 step --method tools/call --tool-name step \
		--tool-args-json "{\"run_id\":\"$run_id\",\"seq\":$seq,\"output\":$REFUND_ANSWER}" -- "${SQL[@]}" &&
		check step 'r.result.structuredContent.status === "completed" && r.result.structuredContent.outcome === "REFUNDED" && r.result.structuredContent.transitions.map((h) => h.to).join() === "check,refunded"'

	inspect 0 get-run --method tools/call --tool-name get_run --tool-arg "run_id=$run_id" -- "${SQL[@]}" &&
		check get-run 'r.result.structuredContent.status === "completed" && r.result.structuredContent.path.at(-1) === "refunded"'

	# The same step again, from another process: answered from the stored
	# trace as a duplicate. A different answer to the same task is refused.
	inspect 0 step-again --method tools/call --tool-name step \
		--tool-args-json "{\"run_id\":\"$run_id\",\"seq\":$seq,\"output\":$REFUND_ANSWER}" -- "${SQL[@]}" &&
		check step-again 'r.result.structuredContent.duplicate === true && r.result.structuredContent.outcome === "REFUNDED"'
	inspect 5 step-other --method tools/call --tool-name step \
		--tool-args-json "{\"run_id\":\"$run_id\",\"seq\":$seq,\"output\":{\"eligible\":false,\"amount_cents\":0,\"reason\":\"other\"}}" -- "${SQL[@]}" &&
		check step-other 'r.result.isError === true && ["run_finished", "stale_seq"].includes(body.code)'

	# A memory store is empty at start: the run is unknown there.
	inspect 5 unknown-run --method tools/call --tool-name get_run --tool-arg "run_id=$run_id" -- "${MEM[@]}" &&
		check unknown-run 'r.result.isError === true && body.code === "unknown_run"'

	# Faults go only into lab runs; gdpr_erase is an operator's attack, and
	# refund has no data subject: n/a, nothing done.
	inspect 5 fault-not-lab --method tools/call --tool-name inject_fault \
		--tool-args-json "{\"run_id\":\"$run_id\",\"fault\":\"skip_step\"}" -- "${SQL[@]}" &&
		check fault-not-lab 'r.result.isError === true && body.code === "forbidden"'
	LAB_START=$(json '({program: "refund", input: input("refund.input.json"), lab: true})')
	if inspect 0 lab-start --method tools/call --tool-name start_run --tool-args-json "$LAB_START" -- "${SQL[@]}"; then
		lab_id=$(jget lab-start 'r.result.structuredContent.run_id')
		inspect 0 fault --method tools/call --tool-name inject_fault \
			--tool-args-json "{\"run_id\":\"$lab_id\",\"fault\":\"skip_step\"}" -- "${SQL[@]}" &&
			check fault 'r.result.isError !== true && r.result.structuredContent.outcome === "wrong_state" && r.result.structuredContent.run_unchanged === true'
		inspect 0 fault-erase --method tools/call --tool-name inject_fault \
			--tool-args-json "{\"run_id\":\"$lab_id\",\"fault\":\"gdpr_erase\"}" -- "${SQL[@]}" &&
			check fault-erase 'r.result.isError !== true && r.result.structuredContent.outcome === "n/a" && r.result.structuredContent.run_unchanged === true'
	fi
fi

inspect 0 modern-stdio --protocol-era modern --method tools/call --tool-name list_programs -- "${MEM[@]}" &&
	check modern-stdio 'r.result.structuredContent.programs.some((p) => p.name === "refund")'

# --- Streamable HTTP ----------------------------------------------------------
start_http_server "$work/http.log" --store memory --data-dir "$work/mem"
url=http://127.0.0.1:$SERVER_PORT/mcp
log "http: $url"
inspect 0 http-list --method tools/list --transport http -- "$url" && check http-list "$TOOLS_OK"
if inspect 0 http-start --method tools/call --tool-name start_run --tool-args-json "$REFUND_START" --transport http -- "$url"; then
	run_id=$(jget http-start 'r.result.structuredContent.run_id')
	seq=$(jget http-start 'r.result.structuredContent.task.seq')
	# The same server, now in the modern (stateless, 2026-07-28) era.
	inspect 0 http-step-modern --protocol-era modern --method tools/call --tool-name step \
		--tool-args-json "{\"run_id\":\"$run_id\",\"seq\":$seq,\"output\":$REFUND_ANSWER}" --transport http -- "$url" &&
		check http-step-modern 'r.result.structuredContent.status === "completed" && r.result.structuredContent.outcome === "REFUNDED"'
fi
stop_server

if [ "$failures" != 0 ]; then
	[ ! -s "$work/http.log" ] || { log "http server log:"; sed 's/^/  | /' "$work/http.log" | tail -40 >&2; }
	die "inspector: $failures check(s) failed"
fi
log "inspector ok"
