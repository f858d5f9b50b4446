// Starts server-everything in stdio mode (node ENTRY stdio), completes the
// 2025-11-25 handshake, checks that tools/list has `echo` and that calling
// it answers "Echo: ping". No dependencies: plain JSON lines over pipes.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

const entry = process.argv[2];
const child = spawn(process.execPath, [entry, "stdio"], { stdio: ["pipe", "pipe", "ignore"] });
const timer = setTimeout(() => fail("no answer within 20s"), 20000);
const pending = new Map();
let nextId = 1;

function fail(msg) {
  console.error(`check-echo: ${msg}`);
  child.kill();
  process.exit(1);
}

createInterface({ input: child.stdout }).on("line", (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    fail(`stdout line is not JSON: ${line}`);
  }
  if (msg.id !== undefined && pending.has(msg.id)) {
    const resolve = pending.get(msg.id);
    pending.delete(msg.id);
    resolve(msg);
  }
});
child.on("exit", (code) => {
  if (pending.size > 0) fail(`server exited (${code}) before answering`);
});

function request(method, params) {
  const id = nextId++;
  child.stdin.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n");
  return new Promise((resolve) => pending.set(id, resolve));
}

const init = await request("initialize", {
  protocolVersion: "2025-11-25",
  capabilities: {},
  clientInfo: { name: "nano-vm-bench-setup", version: "1" },
});
if (!init.result) fail(`initialize: ${JSON.stringify(init)}`);
child.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) + "\n");
const list = await request("tools/list", {});
if (!list.result?.tools?.some((t) => t.name === "echo")) fail("tools/list has no echo tool");
const call = await request("tools/call", { name: "echo", arguments: { message: "ping" } });
const text = call.result?.content?.[0]?.text;
if (text !== "Echo: ping" || call.result.isError) fail(`echo answered ${JSON.stringify(call)}`);
clearTimeout(timer);
child.stdin.end();
child.kill();
console.error(`check-echo: ${init.result.serverInfo.name} ${init.result.serverInfo.version}: echo ok`);
