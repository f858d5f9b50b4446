// End-to-end tests of `nano-vm-mcp serve` through the official MCP
// TypeScript SDK client, the way an IDE or agent host talks to it: over
// stdio (the client spawns the server) and over Streamable HTTP (the test
// starts the server on a free loopback port).
//
// The client validates every structuredContent against the tool's
// outputSchema (it compiles them on listTools), so a success that drifts
// from its advertised schema fails here.
//
//   NANO_VM_BIN=.cache/bin/nano-vm-mcp node --test tests/node/sdk-client.test.mjs
//
// Run through tests/node/run.sh, which installs Node 22 and the SDK first.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.NANO_VM_BIN ?? path.join(ROOT, '.cache/bin/nano-vm-mcp');
const EXAMPLES = path.join(ROOT, 'examples');
const CALL_TIMEOUT = 15_000;

// The agent profile's tools (the contract).
const AGENT_TOOLS = [
  'list_programs', 'start_run', 'step', 'get_run', 'get_receipt', 'verify_receipt',
  'replay_run', 'inject_fault', 'cancel_run', 'await_approval', 'list_runs',
];
const READ_ONLY = ['list_programs', 'get_run', 'list_runs', 'get_receipt', 'verify_receipt', 'replay_run'];
const MUTATING = ['start_run', 'step', 'cancel_run'];
const HINTS = ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint'];
const STATUSES = ['running', 'waiting_approval', 'completed', 'failed', 'cancelled'];

const readJSON = (name) => JSON.parse(readFileSync(path.join(EXAMPLES, name), 'utf8'));
const readAnswers = (name) =>
  readFileSync(path.join(EXAMPLES, name), 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));

// ---------------------------------------------------------------------------
// Servers and clients

function tempDataDir() {
  return mkdtempSync(path.join(os.tmpdir(), 'nano-vm-e2e-'));
}

function serveArgs(dataDir, extra = []) {
  return ['serve', '--store', 'memory', '--data-dir', dataDir, ...extra];
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, child, stderr, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`server exited with ${child.exitCode} before listening:\n${stderr()}`);
    }
    const ok = await new Promise((resolve) => {
      const sock = net.connect({ port, host: '127.0.0.1' }, () => { sock.destroy(); resolve(true); });
      sock.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`server did not listen on 127.0.0.1:${port} within ${ms} ms:\n${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// connect starts a server for the transport and returns a connected client
// plus the things to check and clean up afterwards.
async function connect(transport, extraArgs = [], { capabilities, setup } = {}) {
  const dataDir = tempDataDir();
  const client = new Client({ name: 'nano-vm-e2e', version: '1.0.0' }, capabilities ? { capabilities } : undefined);
  setup?.(client);
  const transportErrors = [];
  let stderrText = '';
  let child = null;
  let t;
  if (transport === 'stdio') {
    t = new StdioClientTransport({ command: BIN, args: serveArgs(dataDir, extraArgs), stderr: 'pipe' });
    t.stderr?.on('data', (d) => { stderrText += d; });
  } else {
    const port = await freePort();
    child = spawn(BIN, serveArgs(dataDir, ['--transport', transport, '--addr', `127.0.0.1:${port}`, ...extraArgs]), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => { stderrText += d; });
    child.stderr.on('data', (d) => { stderrText += d; });
    await waitForPort(port, child, () => stderrText);
    t = transport === 'sse'
      ? new SSEClientTransport(new URL(`http://127.0.0.1:${port}/sse`))
      : new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`));
  }
  client.onerror = (e) => transportErrors.push(e);

  // stop ends an HTTP server with SIGTERM, as a service manager would; it
  // must exit 0 (after at most its 10 s shutdown grace).
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const { code, signal } = await exited;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`server exited with ${code ?? signal} on SIGTERM:\n${stderrText}`);
  };
  try {
    await client.connect(t);
  } catch (e) {
    await t.close().catch(() => {});
    await stop().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`connect over ${transport}: ${e.message}\nserver stderr:\n${stderrText}`, { cause: e });
  }
  return {
    client,
    transportErrors,
    stderr: () => stderrText,
    async close() {
      const t0 = Date.now();
      await client.close().catch(() => {});
      const t1 = Date.now();
      try {
        await stop();
      } finally {
        // E2E_DEBUG=1 shows how long each side took to close and the server's stderr.
        if (process.env.E2E_DEBUG) console.error(`close: client ${t1 - t0} ms, server ${Date.now() - t1} ms\n${stderrText}`);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Calling tools

// ok calls a tool that must succeed: not isError, with structuredContent
// (validated by the SDK against the outputSchema) mirrored in the text.
async function ok(client, name, args) {
  const res = await client.callTool({ name, arguments: args }, undefined, { timeout: CALL_TIMEOUT });
  if (res.isError) {
    assert.fail(`${name} ${JSON.stringify(args).slice(0, 300)}: unexpected isError: ${res.content?.[0]?.text}`);
  }
  assert.ok(res.structuredContent && typeof res.structuredContent === 'object', `${name}: no structuredContent`);
  const text = res.content?.find((c) => c.type === 'text');
  if (text) {
    assert.deepEqual(JSON.parse(text.text), res.structuredContent, `${name}: the text content is not the structured content`);
  }
  return res.structuredContent;
}

// fail calls a tool that must answer with a domain error and returns the
// error JSON {code, message, details?, task?} parsed from the first text.
async function fail(client, name, args, code) {
  const res = await client.callTool({ name, arguments: args }, undefined, { timeout: CALL_TIMEOUT });
  assert.equal(res.isError, true, `${name}: expected isError ${code}, got ${JSON.stringify(res.structuredContent ?? res.content)}`);
  assert.equal(res.structuredContent, undefined, `${name}: an isError result must not carry structuredContent`);
  assert.equal(res.content?.[0]?.type, 'text', `${name}: the first content of an error must be text`);
  let body;
  try {
    body = JSON.parse(res.content[0].text);
  } catch {
    assert.fail(`${name}: the error text is not JSON: ${res.content[0].text}`);
  }
  assert.equal(typeof body.code, 'string', `${name}: error without code: ${res.content[0].text}`);
  assert.equal(typeof body.message, 'string', `${name}: error without message`);
  assert.ok(body.message.length > 0, `${name}: empty error message`);
  if (code !== undefined) {
    assert.equal(body.code, code, `${name}: error ${res.content[0].text}`);
  }
  return body;
}

function assertTask(task, { state, kind } = {}) {
  assert.ok(task, 'expected a task');
  assert.equal(typeof task.seq, 'number');
  assert.ok(task.seq >= 1, `task seq ${task.seq}`);
  assert.equal(typeof task.state, 'string');
  assert.equal(typeof task.kind, 'string');
  assert.equal(typeof task.attempts_left, 'number');
  assert.equal(typeof task.output_schema, 'object');
  assert.equal(typeof task.view, 'object');
  if (state) assert.equal(task.state, state);
  if (kind) assert.equal(task.kind, kind);
  if (task.kind === 'tool') {
    assert.equal(typeof task.tool?.name, 'string', 'a tool task names its tool');
  }
}

// stepArgs builds step's arguments for the current task.
function stepArgs(runId, task, output) {
  const args = { run_id: runId, seq: task.seq, output, state: task.state };
  if (task.kind === 'tool') args.tool = { name: task.tool.name };
  return args;
}

const hops = (r) => r.transitions.map((h) => `${h.from}->${h.to}`);

// ---------------------------------------------------------------------------
// The suite, once per transport

for (const transport of ['stdio', 'http']) {
  describe(`serve over ${transport}`, { timeout: 120_000 }, () => {
    let srv;
    let client;
    let programs;
    const tag = `${transport}-${process.pid}`;

    before(async () => {
      srv = await connect(transport);
      client = srv.client;
    });

    after(async () => {
      if (srv) {
        const errors = srv.transportErrors.map(String);
        await srv.close();
        // Anything on stdio's stdout that is not JSON-RPC (a log line)
        // shows up here as a parse error.
        assert.deepEqual(errors, [], `transport errors; server stderr:\n${srv.stderr()}`);
      }
    });

    test('initialize reports the server and its capabilities', () => {
      const info = client.getServerVersion();
      assert.equal(typeof info?.name, 'string');
      const caps = client.getServerCapabilities();
      assert.ok(caps?.tools, 'tools capability');
    });

    test('tools/list: every tool has an object inputSchema, an outputSchema and all four annotations', async () => {
      const { tools } = await client.listTools(undefined, { timeout: CALL_TIMEOUT });
      const names = tools.map((t) => t.name);
      for (const want of AGENT_TOOLS) assert.ok(names.includes(want), `missing tool ${want} in ${names}`);
      assert.ok(!names.includes('approve'), 'the agent profile must not list approve');
      assert.ok(!names.includes('list_approvals'), 'the agent profile must not list list_approvals');
      for (const t of tools) {
        assert.ok(t.description && t.description.length > 0, `${t.name}: description`);
        assert.equal(t.inputSchema?.type, 'object', `${t.name}: inputSchema.type`);
        assert.ok(t.outputSchema, `${t.name}: no outputSchema`);
        assert.equal(t.outputSchema.type, 'object', `${t.name}: outputSchema.type`);
        for (const h of HINTS) {
          assert.equal(typeof t.annotations?.[h], 'boolean', `${t.name}: annotation ${h} not set`);
        }
        assert.equal(t.annotations.openWorldHint, false, `${t.name}: openWorldHint`);
      }
      const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
      for (const n of READ_ONLY) assert.equal(byName[n].annotations.readOnlyHint, true, `${n} is read-only`);
      for (const n of MUTATING) assert.equal(byName[n].annotations.readOnlyHint, false, `${n} is not read-only`);
      assert.equal(byName.get_receipt.annotations.idempotentHint, true, 'get_receipt is idempotent');
      assert.equal(byName.inject_fault.annotations.destructiveHint, true, 'inject_fault is destructive');
    });

    test('list_programs lists the embedded examples with their definition hashes', async () => {
      const r = await ok(client, 'list_programs', {});
      programs = Object.fromEntries(r.programs.map((p) => [p.name, p]));
      for (const name of ['kyc-onboarding', 'refund', 'code-change']) {
        const p = programs[name];
        assert.ok(p, `program ${name} missing`);
        assert.equal(typeof p.version, 'string');
        assert.match(p.definition_hash, /\S{16,}/);
        assert.ok(p.description.length > 0);
      }
    });

    // The KYC run goes through llm and tool tasks, a rejected answer and a
    // stale seq, to the compliance officer's approval, where it stops: an
    // approval cannot be answered with step.
    const kyc = {};
    test('start_run starts a KYC run and repeats it for the same idempotency key', async () => {
      const input = readJSON('kyc-onboarding.input.json');
      const key = `e2e-${tag}-kyc`;
      const r = await ok(client, 'start_run', { program: 'kyc-onboarding', input, idempotency_key: key });
      assert.match(r.run_id, /\S{8,}/);
      assert.equal(r.status, 'running');
      assertTask(r.task, { state: 'collect_customer_data', kind: 'llm' });
      Object.assign(kyc, { runId: r.run_id, task: r.task, answers: readAnswers('kyc-onboarding.approved.answers.jsonl') });

      const again = await ok(client, 'start_run', { program: 'kyc-onboarding', input, idempotency_key: key });
      assert.equal(again.run_id, r.run_id, 'same idempotency key, same run');
      assert.equal(again.task?.seq, r.task.seq);
    });

    test('step with a stale seq is rejected with stale_seq and the current task', async () => {
      const { runId, task } = kyc;
      const e = await fail(client, 'step', { run_id: runId, seq: task.seq + 7, output: kyc.answers[1] }, 'stale_seq');
      assertTask(e.task, { state: task.state });
      assert.equal(e.task.seq, task.seq, 'the error names the task to answer');
    });

    test('step with an output that breaks the schema is rejected and uses an attempt', async () => {
      const { runId, task } = kyc;
      // Line 1 of the answers gives the date of birth as "14 MAR 1988".
      const e = await fail(client, 'step', stepArgs(runId, task, kyc.answers[0]), 'schema_violation');
      assertTask(e.task, { state: task.state });
      assert.equal(e.task.attempts_left, task.attempts_left - 1, 'a rejected answer uses up an attempt');
      assert.ok(Array.isArray(e.details) && e.details.length > 0, 'schema_violation carries details');
      kyc.task = e.task;
    });

    test('step drives the KYC run through llm and tool tasks to the approval', async () => {
      const { runId } = kyc;
      let r = await ok(client, 'step', stepArgs(runId, kyc.task, kyc.answers[1]));
      assert.equal(r.run_id, runId);
      assert.equal(r.status, 'running');
      assert.deepEqual(r.transition, r.transitions[0]);
      assert.deepEqual(hops(r), ['collect_customer_data->screen_sanctions']);
      assertTask(r.task, { state: 'screen_sanctions', kind: 'tool' });

      // A tool task's result must name its tool; the wrong one is refused.
      const denied = await fail(client, 'step', { ...stepArgs(runId, r.task, kyc.answers[2]), tool: { name: 'not_the_tool' } });
      assert.ok(['capability_denied', 'wrong_state', 'invalid_arguments'].includes(denied.code), `wrong tool: ${denied.code}`);

      r = await ok(client, 'step', stepArgs(runId, r.task, kyc.answers[2]));
      assert.deepEqual(hops(r), ['screen_sanctions->sanctions_gate', 'sanctions_gate->adverse_media_search']);
      assertTask(r.task, { state: 'adverse_media_search', kind: 'tool' });

      r = await ok(client, 'step', {
        ...stepArgs(runId, r.task, kyc.answers[3]),
        definition_hash: programs['kyc-onboarding'].definition_hash,
      });
      assert.deepEqual(hops(r), ['adverse_media_search->agent_review']);
      assertTask(r.task, { state: 'agent_review', kind: 'llm' });

      r = await ok(client, 'step', stepArgs(runId, r.task, kyc.answers[4]));
      assert.deepEqual(hops(r), ['agent_review->human_approval']);
      assert.equal(r.status, 'waiting_approval');
      kyc.approvalSeq = r.task?.seq;
      kyc.approvalTask = r.task;
    });

    test('get_run shows the run waiting for approval at human_approval', async () => {
      const r = await ok(client, 'get_run', { run_id: kyc.runId });
      assert.equal(r.run_id, kyc.runId);
      assert.equal(r.program, 'kyc-onboarding');
      assert.equal(r.definition_hash, programs['kyc-onboarding'].definition_hash);
      assert.equal(r.status, 'waiting_approval');
      assert.equal(r.state, 'human_approval');
      assert.deepEqual(r.path.slice(0, 2), ['collect_customer_data', 'screen_sanctions']);
      assert.equal(r.path.at(-1), 'human_approval');
      kyc.approvalSeq ??= r.seq;
    });

    test('an approval cannot be answered with step', async () => {
      await fail(client, 'step', { run_id: kyc.runId, seq: kyc.approvalSeq, output: kyc.answers[5] }, 'approval_required');
    });

    test('await_approval without an approval channel says so', async () => {
      await fail(client, 'await_approval', { run_id: kyc.runId, seq: kyc.approvalSeq }, 'approval_channel_closed');
    });

    // A refund run that completes, for the receipt, the replay and the
    // run list.
    const refund = {};
    test('a refund run completes in one step', async () => {
      const s = await ok(client, 'start_run', { program: 'refund', input: readJSON('refund.input.json') });
      assertTask(s.task, { state: 'assess_refund', kind: 'llm' });
      const [answer] = readAnswers('refund.refunded.answers.jsonl');
      const r = await ok(client, 'step', stepArgs(s.run_id, s.task, answer));
      assert.equal(r.status, 'completed');
      assert.equal(r.outcome, 'REFUNDED');
      assert.equal(r.task, undefined);
      assert.deepEqual(hops(r), ['assess_refund->check', 'check->refunded']);
      refund.runId = r.run_id;

      // Repeating the same step is answered from the trace, not redone.
      const again = await ok(client, 'step', stepArgs(s.run_id, s.task, answer));
      assert.equal(again.duplicate, true, 'a repeated step is a duplicate');
      assert.equal(again.outcome, 'REFUNDED');
      assert.deepEqual(again.transitions, r.transitions);
      // A different answer to the same task is refused.
      const other = await fail(client, 'step', stepArgs(s.run_id, s.task, { ...answer, reason: 'A different answer.' }));
      assert.ok(['run_finished', 'stale_seq'].includes(other.code), `another answer after the end: ${other.code}`);
    });

    test('get_receipt then verify_receipt: valid, and a tampered receipt is not', async () => {
      const rc = await ok(client, 'get_receipt', { run_id: refund.runId });
      assert.equal(typeof rc.receipt, 'object');
      assert.ok(rc.signature.length > 0);
      assert.ok(rc.key_id.length > 0);
      assert.match(rc.public_key, /^nano-vm-mcp-ed25519 /);

      const v = await ok(client, 'verify_receipt', { receipt: rc.receipt, signature: rc.signature });
      assert.equal(v.valid, true, `problems: ${JSON.stringify(v.problems)}`);
      assert.deepEqual(v.problems, []);

      const tampered = structuredClone(rc.receipt);
      tampered.run_id = 'run_tampered';
      const bad = await client.callTool({ name: 'verify_receipt', arguments: { receipt: tampered, signature: rc.signature } },
        undefined, { timeout: CALL_TIMEOUT });
      if (!bad.isError) {
        assert.equal(bad.structuredContent.valid, false);
        assert.ok(bad.structuredContent.problems.length > 0);
      }
    });

    test('replay_run refolds the trace identically', async () => {
      for (const runId of [refund.runId, kyc.runId]) {
        const r = await ok(client, 'replay_run', { run_id: runId });
        assert.equal(r.identical, true, `divergence: ${JSON.stringify(r.divergence)}`);
      }
    });

    test('resources: programs and receipts; the drive_run prompt', async () => {
      const opts = { timeout: CALL_TIMEOUT };
      const { resources } = await client.listResources(undefined, opts);
      const uri = 'nano-vm://programs/refund';
      assert.ok(resources.some((r) => r.uri === uri), `resources: ${resources.map((r) => r.uri)}`);
      const prog = await client.readResource({ uri }, opts);
      const info = JSON.parse(prog.contents[0].text);
      assert.equal(info.name, 'refund');
      assert.equal(typeof info.input_schema, 'object');

      const { resourceTemplates } = await client.listResourceTemplates(undefined, opts);
      assert.ok(resourceTemplates.some((t) => t.uriTemplate === 'nano-vm://runs/{run_id}/receipt'));
      const rc = await client.readResource({ uri: `nano-vm://runs/${refund.runId}/receipt` }, opts);
      const receipt = JSON.parse(rc.contents[0].text);
      assert.ok(receipt.signature && receipt.receipt, 'the receipt resource is what get_receipt returns');

      const { prompts } = await client.listPrompts(undefined, opts);
      assert.ok(prompts.some((p) => p.name === 'drive_run'), `prompts: ${prompts.map((p) => p.name)}`);
      const pr = await client.getPrompt({ name: 'drive_run', arguments: { program: 'refund' } }, opts);
      assert.ok(pr.messages.length > 0);
    });

    test('list_runs lists the runs, filtered by program and status', async () => {
      const all = await ok(client, 'list_runs', {});
      const ids = all.runs.map((r) => r.run_id);
      assert.ok(ids.includes(kyc.runId) && ids.includes(refund.runId), `list_runs: ${ids}`);
      for (const r of all.runs) assert.ok(STATUSES.includes(r.status), `status ${r.status}`);

      const refunds = await ok(client, 'list_runs', { program: 'refund' });
      assert.deepEqual(refunds.runs.map((r) => r.run_id), [refund.runId]);
      const done = await ok(client, 'list_runs', { status: 'completed' });
      assert.ok(done.runs.every((r) => r.status === 'completed'));
      assert.ok(done.runs.some((r) => r.run_id === refund.runId && r.outcome === 'REFUNDED'));
    });

    test('inject_fault: only lab runs; skip_step meets wrong_state, gdpr_erase is n/a for an agent', async () => {
      await fail(client, 'inject_fault', { run_id: refund.runId, fault: 'skip_step' }, 'forbidden');
      const lab = await ok(client, 'start_run', { program: 'refund', input: readJSON('refund.input.json'), lab: true });
      const f = await ok(client, 'inject_fault', { run_id: lab.run_id, fault: 'skip_step' });
      assert.equal(f.fault, 'skip_step');
      assert.equal(f.outcome, 'wrong_state');
      assert.equal(f.run_unchanged, true);
      const g = await ok(client, 'get_run', { run_id: lab.run_id });
      assert.equal(g.state, 'assess_refund');
      assert.equal(g.seq, 1);
      const e = await ok(client, 'inject_fault', { run_id: lab.run_id, fault: 'gdpr_erase' });
      assert.equal(e.outcome, 'n/a');
      assert.equal(e.run_unchanged, true);
      await ok(client, 'cancel_run', { run_id: lab.run_id, reason: 'e2e: lab run no longer needed' });
    });

    test('cancel_run ends the KYC run; later steps are refused', async () => {
      const r = await ok(client, 'cancel_run', { run_id: kyc.runId, reason: 'e2e: the customer withdrew the application' });
      assert.equal(r.run_id, kyc.runId);
      assert.equal(r.status, 'cancelled');
      const g = await ok(client, 'get_run', { run_id: kyc.runId });
      assert.equal(g.status, 'cancelled');
      await fail(client, 'step', { run_id: kyc.runId, seq: kyc.approvalSeq, output: kyc.answers[5] }, 'run_finished');
    });

    test('domain errors: unknown run, unknown program, bad arguments', async () => {
      await fail(client, 'get_run', { run_id: 'run_does_not_exist' }, 'unknown_run');
      await fail(client, 'start_run', { program: 'no-such-program', input: {} }, 'unknown_program');
      await fail(client, 'start_run', { program: 'refund', input: { order: {} } }, 'invalid_input');
      await fail(client, 'step', { run_id: refund.runId }, 'invalid_arguments');
    });
  });
}

describe('serve --transport sse (the deprecated HTTP+SSE transport)', { timeout: 60_000 }, () => {
  test('lists the tools and runs a refund to its outcome', async () => {
    const srv = await connect('sse');
    try {
      const { client } = srv;
      const { tools } = await client.listTools(undefined, { timeout: CALL_TIMEOUT });
      for (const want of AGENT_TOOLS) assert.ok(tools.some((t) => t.name === want), `missing ${want}`);
      const s = await ok(client, 'start_run', { program: 'refund', input: readJSON('refund.input.json') });
      const [answer] = readAnswers('refund.refunded.answers.jsonl');
      const r = await ok(client, 'step', stepArgs(s.run_id, s.task, answer));
      assert.equal(r.outcome, 'REFUNDED');
      await fail(client, 'step', { run_id: s.run_id, seq: s.task.seq + 1, output: answer });
      assert.deepEqual(srv.transportErrors.map(String), []);
    } finally {
      await srv.close();
    }
  });
});

describe('serve --profile operator over stdio', { timeout: 60_000 }, () => {
  let agentTools;
  test('the agent profile', async () => {
    const srv = await connect('stdio');
    try {
      agentTools = (await srv.client.listTools(undefined, { timeout: CALL_TIMEOUT })).tools.map((t) => t.name);
    } finally {
      await srv.close();
    }
  });

  test('lists more tools than the agent profile, approve among them', async () => {
    const srv = await connect('stdio', ['--profile', 'operator']);
    try {
      const { tools } = await srv.client.listTools(undefined, { timeout: CALL_TIMEOUT });
      const names = tools.map((t) => t.name);
      assert.ok(names.includes('approve') && names.includes('list_approvals'), `operator tools: ${names}`);
      for (const n of agentTools) assert.ok(names.includes(n), `operator lacks ${n}`);
      assert.ok(names.length > agentTools.length);
      for (const t of tools) {
        assert.equal(t.inputSchema?.type, 'object', `${t.name}: inputSchema.type`);
        for (const h of HINTS) assert.equal(typeof t.annotations?.[h], 'boolean', `${t.name}: ${h}`);
      }

      // No approvers are configured, so nobody's token is an approver's.
      const st = await ok(srv.client, 'start_run', { program: 'refund', input: readJSON('refund.large.input.json') });
      const [assessment] = readAnswers('refund.large.refunded.answers.jsonl');
      const w = await ok(srv.client, 'step', stepArgs(st.run_id, st.task, assessment));
      assert.equal(w.status, 'waiting_approval');
      const g = await ok(srv.client, 'get_run', { run_id: st.run_id });
      await fail(srv.client, 'approve', { run_id: st.run_id, seq: g.seq, decision: { approve: true }, approver_token: 'not-a-token' }, 'forbidden');
      // Without an approver token the operator's inbox holds every role's
      // pending approvals, this refund's among them.
      const inbox = await ok(srv.client, 'list_approvals', {});
      assert.equal(inbox.scope, 'all');
      const row = inbox.approvals.find((a) => a.run_id === st.run_id);
      assert.ok(row, `the waiting refund is not in the inbox: ${JSON.stringify(inbox)}`);
      assert.equal(row.role, 'support_manager');
      assert.equal(row.seq, g.seq);
      assert.equal(row.approvals_remaining, 1);
      await fail(srv.client, 'list_approvals', { approver_token: 'not-a-token' }, 'forbidden');
      assert.deepEqual(srv.transportErrors.map(String), []);
    } finally {
      await srv.close();
    }
  });
});

// With --approval-channel elicitation, await_approval asks the human at the
// client through an elicitation form; the SDK client answers it here.
for (const transport of ['stdio', 'http']) {
  describe(`await_approval through the elicitation channel over ${transport}`, { timeout: 60_000 }, () => {
    let srv;
    const asked = [];
    before(async () => {
      srv = await connect(transport, ['--approval-channel', 'elicitation'], {
        capabilities: { elicitation: { form: {} } },
        setup: (c) => c.setRequestHandler(ElicitRequestSchema, async (req) => {
          asked.push(req.params);
          return { action: 'accept', content: { approve: true, note: 'e2e: photos confirm transit damage' } };
        }),
      });
    });
    after(async () => {
      if (srv) {
        const errors = srv.transportErrors.map(String);
        await srv.close();
        assert.deepEqual(errors, [], `transport errors; server stderr:\n${srv.stderr()}`);
      }
    });

    test('a large refund waits for the manager, who approves through the client form', async () => {
      const { client } = srv;
      await client.listTools(undefined, { timeout: CALL_TIMEOUT });
      const s = await ok(client, 'start_run', { program: 'refund', input: readJSON('refund.large.input.json') });
      const [assessment] = readAnswers('refund.large.refunded.answers.jsonl');
      const w = await ok(client, 'step', stepArgs(s.run_id, s.task, assessment));
      assert.equal(w.status, 'waiting_approval');
      assert.deepEqual(hops(w), ['assess_refund->check', 'check->manager_approval']);
      const g = await ok(client, 'get_run', { run_id: s.run_id });
      assert.equal(g.state, 'manager_approval');

      const r = await ok(client, 'await_approval', { run_id: s.run_id, seq: g.seq });
      assert.equal(asked.length, 1, 'the client was asked once');
      assert.equal(asked[0].requestedSchema?.properties?.approve?.type, 'boolean');
      assert.equal(r.status, 'completed');
      assert.equal(r.outcome, 'REFUNDED');
      assert.deepEqual(hops(r), ['manager_approval->refunded']);

      const rc = await ok(client, 'get_receipt', { run_id: s.run_id });
      const v = await ok(client, 'verify_receipt', { receipt: rc.receipt, signature: rc.signature });
      assert.equal(v.valid, true, `problems: ${JSON.stringify(v.problems)}`);
      const rp = await ok(client, 'replay_run', { run_id: s.run_id });
      assert.equal(rp.identical, true);
    });
  });
}
