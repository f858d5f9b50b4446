// The web console in a real browser: Debian's chromium, driven by
// playwright-core, against the server run.sh started. The tests run in
// order and share one browser profile: first a visitor without a
// credential (the server has an operator token, so the console asks for
// one), then signed in as the operator, who signs out at the end. Every page visited is saved as a
// screenshot in $ARTIFACTS.
//
// Environment (run.sh sets it): CONSOLE_URL (http://127.0.0.1:PORT),
// OPERATOR_TOKEN, ARTIFACTS, CHROMIUM.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, request } from "playwright-core";

const base = must("CONSOLE_URL");
const token = must("OPERATOR_TOKEN");
const artifacts = must("ARTIFACTS");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
// Exactly these: without the background-networking ones chromium keeps
// trying to reach Google's hosts, which this machine's network refuses.
const flags = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
// The demo's customer, fictional but personal data all the same: no page
// may show it, to the operator either.
const personal = ["Lindqvist", "Johanna", "94117352", "Hornsgatan", "1988-03-14"];

function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run tests/browser/run.sh`);
  return v;
}

let profile, context, page, api;
let demoRun = null; // the run the demo started, for the run page's tests
const problems = []; // script errors and CSP violations, from any page

before(async () => {
  profile = mkdtempSync(path.join(tmpdir(), "nano-vm-chromium-"));
  // A persistent context on a fresh profile is chromium's --user-data-dir.
  context = await chromium.launchPersistentContext(profile, {
    executablePath, headless: true, args: flags,
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(15_000);
  page = context.pages()[0] ?? await context.newPage();
  watch(page);
  // A plain HTTP client, no browser: no cookie, no Origin unless given.
  api = await request.newContext({ baseURL: base });
});

after(async () => {
  await api?.dispose();
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

function watch(p) {
  p.on("pageerror", (e) => problems.push(`${p.url()}: ${e.message}`));
  p.on("console", (m) => {
    // A refused fetch logs "Failed to load resource": the tests cause those.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`${p.url()}: ${m.text()}`);
  });
}

// shot saves the whole page as <name>.png; with view, also its top
// 1280×1400 pixels as <name>-view.png, which the README shows
// (UPDATE_SCREENSHOTS=1 run.sh copies it into docs/images).
async function shot(name, { view = false } = {}) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
  if (view) {
    await page.screenshot({ path: path.join(artifacts, `${name}-view.png`), fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1400 } });
  }
}

// layoutProblems lists what does not fit a 1280-px window on the page:
// a document wider than the window, a table cell taller than a sane bound
// (a squeezed column), and a chart label outside its SVG's box, which the
// SVG clips.
const maxCellHeight = 240;
function layoutProblems() {
  return page.evaluate((maxCellHeight) => {
    const out = [];
    const doc = document.documentElement;
    if (doc.scrollWidth > window.innerWidth) out.push(`the document is ${doc.scrollWidth} px wide in a ${window.innerWidth}-px window`);
    // What makes it wide: a box beyond the window, or text spilling out of
    // its box (a long unbroken string). Scrolling boxes (the graph, the
    // charts, JSON) may hold wider content: that is what they are for.
    const name = (el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${typeof el.className === "string" && el.className ? "." + el.className.split(" ")[0] : ""}`;
    for (const el of document.body.querySelectorAll("*")) {
      if (el.closest(".graph-box, .chart-box, pre") || getComputedStyle(el).position === "absolute") continue;
      const r = el.getBoundingClientRect();
      if (r.right > window.innerWidth + 0.5) out.push(`${name(el)} reaches ${Math.round(r.right)} px`);
      else if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible") {
        out.push(`${name(el)}'s text spills ${el.scrollWidth - el.clientWidth} px out of it: ${el.textContent.trim().slice(0, 60)}`);
      }
    }
    for (const cell of document.querySelectorAll("td, th")) {
      const h = cell.getBoundingClientRect().height;
      if (h > maxCellHeight) out.push(`a ${cell.tagName.toLowerCase()} is ${Math.round(h)} px tall: ${cell.textContent.trim().slice(0, 60)}`);
    }
    for (const svg of document.querySelectorAll("svg.chart")) {
      const box = svg.getBoundingClientRect();
      for (const t of svg.querySelectorAll("text")) {
        const r = t.getBoundingClientRect();
        if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
          out.push(`svg#${svg.id}'s label "${t.textContent}" lies outside the SVG's box`);
        }
      }
    }
    return out.slice(0, 20);
  }, maxCellHeight);
}

// at1280x800 checks the page's layout in a 1280×800 window.
async function at1280x800(where) {
  const old = page.viewportSize();
  await page.setViewportSize({ width: 1280, height: 800 });
  try {
    assert.deepEqual(await layoutProblems(), [], `${where} does not fit a 1280×800 window`);
  } finally {
    await page.setViewportSize(old);
  }
}

async function open(p) {
  const res = await page.goto(base + p);
  assert.ok(res, `no answer for ${p}`);
  assert.equal(res.status(), 200, `${p}: HTTP ${res.status()}`);
  return res;
}

// openHome opens /ui and checks where it leads, and the page's CSP.
async function openHome(want) {
  const res = await page.goto(base + "/ui");
  assert.equal(new URL(page.url()).pathname, want);
  assert.equal(res.status(), 200);
  assert.match(res.headers()["content-security-policy"] ?? "", /script-src 'self'/);
}

async function noPersonalData(where) {
  const text = await page.locator("body").innerText();
  for (const s of personal) assert.ok(!text.includes(s), `${where} shows personal data (${s})`);
}

// fetchFromPage makes a same-origin request from the page's own script
// context, as the console's script would, and answers its status.
function fetchFromPage(url, body) {
  return page.evaluate(async ([url, body]) => {
    const res = await fetch(url, { method: "POST", body: body ? new URLSearchParams(body) : undefined });
    return res.status;
  }, [url, body]);
}

// --- without a credential ---

test("a visitor without a credential is sent to sign in", async () => {
  await openHome("/ui/login");
  await page.locator("#login-required").waitFor();
  assert.equal(await page.locator('nav a[href="/ui/runs"]').count(), 0, "the sign-in page links to the runs");
  assert.equal(await page.locator(".badge.auditor").count(), 0, "an auditor badge on a closed console");
  await shot("login-required");
  for (const p of ["/ui/runs", "/ui/programs", "/ui/metrics", "/ui/runs/run_x"]) {
    const r = await api.get(p);
    assert.equal(r.status(), 401, `GET ${p} without a credential`);
    assert.equal((await r.json()).error, "missing_token", p);
  }
  assert.equal((await api.post("/ui/runs/run_x/receipt/verify")).status(), 401, "verify without a credential");
  const icon = await api.get("/favicon.ico");
  assert.equal(icon.status(), 200, "the favicon");
  assert.match(icon.headers()["content-type"] ?? "", /^image\//);
});

test("the console refuses actions without a credential", async () => {
  await open("/ui/login");
  assert.equal(await fetchFromPage("/ui/lab/run", { program: "kyc-onboarding" }), 401, "POST /ui/lab/run from the sign-in page");
  assert.equal(await fetchFromPage("/ui/demo/start"), 401, "POST /ui/demo/start from the sign-in page");
  const plain = await api.post("/ui/lab/run", { form: { program: "kyc-onboarding" } });
  assert.equal(plain.status(), 401, "POST /ui/lab/run without a credential");
  const wrong = await api.post("/ui/lab/run", { form: { program: "kyc-onboarding" }, headers: { Authorization: "Bearer not-the-operator-token" } });
  assert.equal(wrong.status(), 401, "POST /ui/lab/run with a wrong token");
});

test("the console refuses a foreign Origin", async () => {
  const evil = "https://evil.example";
  for (const [method, url] of [["GET", "/ui/runs"], ["GET", "/ui/programs"], ["POST", "/ui/demo/start"], ["POST", "/ui/lab/run"]]) {
    // Even with the operator's own token: a browser page from elsewhere
    // must not act through it.
    const res = await api.fetch(url, { method, headers: { Origin: evil, Authorization: `Bearer ${token}` } });
    assert.equal(res.status(), 403, `${method} ${url} from ${evil}`);
    assert.equal((await res.json()).error, "forbidden_origin", `${method} ${url}`);
  }

  // And from a real page on another site: a form that posts to the
  // console. Playwright serves the foreign page; the post is real.
  const foreign = await context.newPage();
  watch(foreign);
  try {
    await foreign.route("http://evil.example/**", (route) => route.fulfill({
      contentType: "text/html",
      body: `<!doctype html><title>elsewhere</title><form method="post" action="${base}/ui/demo/start"><button id="go">go</button></form>`,
    }));
    await foreign.goto("http://evil.example/");
    const [res] = await Promise.all([
      foreign.waitForResponse((r) => r.url() === `${base}/ui/demo/start`),
      foreign.click("#go"),
    ]);
    assert.equal(res.status(), 403, "a foreign page's post");
    assert.equal((await res.json()).error, "forbidden_origin");
  } finally {
    await foreign.close();
  }
});

// --- as the operator ---

test("the operator signs in with the operator token", async () => {
  await open("/ui/login");
  await page.fill("#token", "not-the-operator-token");
  await Promise.all([page.waitForURL(/\/ui\/login\?failed=1$/), page.click("form.login button[type=submit]")]);
  await page.locator("[role=alert]", { hasText: "not the operator token" }).waitFor();
  await shot("login-failed");
  assert.equal(await context.cookies(`${base}/ui/`).then((cs) => cs.length), 0, "a cookie after a failed sign-in");

  await page.fill("#token", token);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/ui/login")), page.click("form.login button[type=submit]")]);
  const cookie = (await context.cookies(`${base}/ui/`)).find((c) => c.name === "nano_vm_console");
  assert.ok(cookie, "no session cookie");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  assert.equal(cookie.path, "/ui");
  await open("/ui/programs");
  assert.equal(await page.locator(".badge.operator").innerText(), "operator");
});

test("the console opens on the runs list", async () => {
  await openHome("/ui/runs");
  await page.locator("#runs-table").waitFor();
  assert.equal(await page.locator(".badge.operator").innerText(), "operator");
  await shot("runs-empty");
});

test("the programs page draws every program's graph", async () => {
  await open("/ui/programs");
  for (const name of ["kyc-onboarding", "refund", "code-change"]) {
    await page.locator(`#prog-${name}`).waitFor();
  }
  assert.ok(await page.locator("svg.graph").count() >= 3, "fewer than 3 graphs");
  assert.equal(await page.locator("svg.graph g#st_human_approval").count(), 1);
  await shot("programs");
});

test("the demo walks a KYC run to APPROVED", { timeout: 60_000 }, async () => {
  await open("/ui/demo");
  const start = page.locator("#demo-start");
  assert.ok(await start.isEnabled(), "the operator's #demo-start is disabled");
  await start.click();
  await page.locator("#demo-outcome", { hasText: "APPROVED" }).waitFor({ timeout: 45_000 });
  const steps = page.locator("ol#demo-steps > li");
  assert.equal(await steps.count(), 12, "one line per canned answer");
  assert.match(await steps.nth(0).innerText(), /rejected: schema_violation/);
  assert.match(await page.locator("ol#demo-steps").innerText(), /human_approval → collect_customer_data \(rollback\)/);
  assert.match(await steps.nth(11).innerText(), /governance_seal → approved/);
  const link = page.locator("#demo-run-link");
  await link.waitFor({ state: "visible" });
  const href = await link.getAttribute("href");
  assert.match(href, /^\/ui\/runs\/run_[A-Za-z0-9_-]+$/);
  demoRun = href.slice("/ui/runs/".length);
  await noPersonalData("the demo page");
  await shot("demo");
  // Open the run as a person would: through the link.
  await Promise.all([page.waitForURL(`${base}${href}`), link.click()]);
});

test("the demo's run page verifies its receipt", { timeout: 30_000 }, async () => {
  assert.ok(demoRun, "no demo run (the demo test failed)");
  // The demo test left the page on the run, through #demo-run-link.
  if (!page.url().endsWith(`/ui/runs/${demoRun}`)) await open(`/ui/runs/${demoRun}`);
  await page.locator("#path-table").waitFor();
  await page.locator("#timeline").waitFor();
  await page.click("#verify-receipt");
  await page.locator("#receipt-verdict", { hasText: "valid" }).waitFor();
  assert.equal((await page.locator("#receipt-verdict").innerText()).trim(), "valid");
  const checks = page.locator("ul#receipt-checks > li");
  assert.ok(await checks.count() > 0, "no receipt checks listed");
  assert.equal(await page.locator("ul#receipt-checks > li.fail").count(), 0, "a receipt check failed");
  assert.equal(await page.locator("ul#receipt-checks > li.pass").count(), await checks.count(), "a check neither passed nor failed");
  await noPersonalData("the run page");
  await shot("run", { view: true });
});

test("the run page's graph highlights the path", async () => {
  assert.ok(demoRun, "no demo run (the demo test failed)");
  if (!page.url().endsWith(`/ui/runs/${demoRun}`)) await open(`/ui/runs/${demoRun}`);
  const graph = page.locator("svg.graph").first();
  await graph.waitFor();
  for (const st of ["collect_customer_data", "screen_sanctions", "sanctions_gate", "adverse_media_search", "agent_review", "human_approval", "governance_seal", "approved"]) {
    assert.equal(await graph.locator(`g#st_${st}.on-path`).count(), 1, `state ${st} is not on the path`);
  }
  for (const st of ["rejected", "escalated"]) {
    assert.equal(await graph.locator(`g#st_${st}.on-path`).count(), 0, `state ${st} is on the path`);
  }
  assert.equal(await graph.locator("g#ed_human_approval_to_collect_customer_data.on-path").count(), 1, "the rollback is not on the path");
  assert.ok(await graph.locator(".current").count() >= 1, "no current state marked");
});

// What a person sees is the computed style, not the class: every edge the
// run took (the path table's data-edge) is drawn bold, green (a rollback
// red), guarded ones too (Graphviz wraps them in <g><a>); every other edge,
// the bold timeout edge among them, thin.
test("the run page's graph draws the path's edges bold and the others thin", async () => {
  assert.ok(demoRun, "no demo run (the demo test failed)");
  if (!page.url().endsWith(`/ui/runs/${demoRun}`)) await open(`/ui/runs/${demoRun}`);
  await page.locator("svg.graph.has-path").waitFor();
  const { edges, nodes } = await page.evaluate(() => {
    const taken = new Set([...document.querySelectorAll("#path-table tbody tr")].map((tr) => tr.dataset.edge));
    const visited = new Set([...document.querySelectorAll("#path-table tbody tr td:nth-child(2)")].map((td) => td.firstChild.textContent.trim()));
    const edges = [...document.querySelectorAll("svg.graph g.edge")].map((g) => {
      const line = getComputedStyle(g.querySelector("path"));
      const head = getComputedStyle(g.querySelector("polygon"));
      return {
        id: g.id, taken: taken.has(g.id), onPath: g.classList.contains("on-path"), guarded: !!g.querySelector("a path"),
        rollback: g.classList.contains("rollback"), timeout: g.classList.contains("timeout"),
        stroke: line.stroke, width: line.strokeWidth, headFill: head.fill, headWidth: head.strokeWidth,
      };
    });
    const nodes = [...document.querySelectorAll("svg.graph g.node[id^=st_]:not(.start)")].map((g) => {
      // A rounded box is a <path>, a diamond a <polygon>, a terminal <ellipse>s.
      const shape = getComputedStyle(g.querySelector("path, polygon, ellipse"));
      return { id: g.id, visited: visited.has(g.id.slice(3)), current: g.classList.contains("current"), stroke: shape.stroke, width: shape.strokeWidth };
    });
    return { edges, nodes };
  });
  const green = "rgb(11, 122, 62)", red = "rgb(180, 35, 24)", black = "rgb(0, 0, 0)", orange = "rgb(194, 94, 0)";
  assert.ok(edges.length > 10, `only ${edges.length} edges`);
  assert.equal(new Set(edges.map((e) => e.id)).size, edges.length, "edges without an id of their own");
  for (const e of edges) {
    assert.equal(e.onPath, e.taken, `edge ${e.id}: on-path ${e.onPath}, taken ${e.taken}`);
    if (e.taken) {
      assert.equal(e.stroke, e.rollback ? red : green, `taken edge ${e.id} is drawn ${e.stroke}`);
      assert.equal(e.width, "3px", `taken edge ${e.id} is ${e.width} wide`);
      assert.equal(e.headFill, e.rollback ? red : green, `taken edge ${e.id}'s arrowhead is ${e.headFill}`);
    } else {
      assert.equal(e.stroke, e.rollback ? red : black, `edge not taken ${e.id} is drawn ${e.stroke}`);
      assert.equal(e.width, "1px", `edge not taken ${e.id} is ${e.width} wide`);
      assert.equal(e.headWidth, "1px", `edge not taken ${e.id}'s arrowhead is ${e.headWidth} wide`);
    }
  }
  // The cases the issue names are there: guarded edges taken, a rollback
  // taken, a timeout edge not taken.
  assert.ok(edges.some((e) => e.taken && e.guarded), "no guarded edge on the path");
  assert.ok(edges.some((e) => e.taken && e.rollback), "no rollback on the path");
  assert.ok(edges.some((e) => e.timeout && !e.taken), "no timeout edge off the path");
  for (const n of nodes) {
    if (n.current) {
      assert.equal(n.stroke, orange, `the current state ${n.id} is drawn ${n.stroke}`);
      assert.equal(n.width, "4px");
    } else if (n.visited) {
      assert.equal(n.stroke, green, `state ${n.id} on the path is drawn ${n.stroke}`);
      assert.equal(n.width, "3px");
    } else {
      assert.notEqual(n.stroke, green, `state ${n.id} off the path is drawn green`);
      assert.notEqual(n.width, "3px", `state ${n.id} off the path is bold`);
    }
  }
  assert.ok(nodes.some((n) => !n.visited && !n.current), "no state off the path");
  await at1280x800("the run page");
});

test("the runs list shows the demo run", async () => {
  assert.ok(demoRun, "no demo run (the demo test failed)");
  await open("/ui/runs");
  await page.locator("#runs-table").waitFor();
  assert.ok(await page.locator("#runs-table", { hasText: demoRun.slice(0, 12) }).count() > 0, "the demo run is not listed");
  await noPersonalData("the runs list");
  await shot("runs");
  await at1280x800("the runs list");
});

test("the lab runs every attack on kyc-onboarding and every row passes", { timeout: 240_000 }, async () => {
  await open("/ui/lab");
  await page.selectOption("#lab-program", "kyc-onboarding");
  await page.click("#lab-start");
  const summary = page.locator("#lab-summary");
  // While it runs the summary reads "Running <fault> (i of n)… <tally>";
  // when done, the tally alone, or the tally and "(stopped)".
  await page.waitForFunction(() => /^\d+ passed, \d+ failed, \d+ n\/a( \(stopped\))?$/.test(document.querySelector("#lab-summary")?.textContent.trim() ?? ""), null, { timeout: 200_000 });
  const text = (await summary.innerText()).trim();
  assert.match(text, /^\d+ passed, 0 failed, \d+ n\/a$/);
  const rows = page.locator("#lab-matrix tr.lab-row");
  const n = await rows.count();
  assert.ok(n > 0, "no lab rows");
  assert.equal(Number(text.match(/^(\d+) passed/)[1]) + Number((text.match(/(\d+) n\/a/) ?? [0, 0])[1]), n, "the summary does not count every row");
  const results = await page.locator("#lab-matrix tr.lab-row td.result").allInnerTexts();
  assert.equal(results.length, n, "a row without a result");
  for (const [i, r] of results.entries()) assert.ok(r.trim() === "pass" || r.trim() === "n/a", `row ${i + 1}: ${r}`);
  assert.ok(results.some((r) => r.trim() === "pass"), "no row passed");
  await noPersonalData("the lab page");
  await shot("lab", { view: true });
  await at1280x800("the lab page with its matrix");
});

test("the metrics page charts the entropy, without the lab's runs", async () => {
  await open("/ui/metrics/kyc-onboarding");
  await page.locator("svg#entropy-chart").waitFor();
  // The lab just ran dozens of runs of kyc-onboarding; the demo's is the
  // only real one.
  assert.match(await page.locator("main").innerText(), /The last 1 runs .*laboratory runs left out/s);
  await noPersonalData("the metrics page");
  await shot("metrics");
  await at1280x800("the metrics page");
  await page.click("#lab-toggle");
  await page.waitForURL(/lab=include/);
  await page.locator("svg#entropy-chart").waitFor();
  const runs = Number((await page.locator("main").innerText()).match(/The last (\d+) runs/)[1]);
  assert.ok(runs > 1, `with the lab's runs the window holds ${runs} runs`);
  await at1280x800("the metrics page with the lab's runs");
});

test("signing out ends the session on the server", async () => {
  const before = (await context.cookies(`${base}/ui/`)).find((c) => c.name === "nano_vm_console");
  assert.ok(before, "no session cookie before signing out");
  await open("/ui/runs");
  await Promise.all([page.waitForURL((u) => u.pathname === "/ui/login"), page.click(".who form button[type=submit]")]);
  assert.equal((await context.cookies(`${base}/ui/`)).filter((c) => c.name === "nano_vm_console").length, 0, "the cookie is still there");
  // The cookie, copied before, is worth nothing now.
  const replay = await api.get("/ui/runs", { headers: { Cookie: `nano_vm_console=${before.value}` } });
  assert.equal(replay.status(), 401, "the old session after signing out");
});

test("no page raised a script error or a CSP violation", () => {
  assert.deepEqual(problems, []);
});
