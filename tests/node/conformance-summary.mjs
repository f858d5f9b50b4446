// Reads the output of `conformance server --expected-failures BASELINE`
// (@modelcontextprotocol/conformance 0.1.16) and prints the verdict first,
// then every scenario with its failures marked expected (listed in the
// baseline) or not. The runner itself prints "Total: N passed, 22 failed"
// before it says that those failures are the baseline's.
//
//   node conformance-summary.mjs OUTPUT.txt RUNNER_EXIT_CODE [BASELINE_NAME]
//
// Exits 0 when the baseline check passed, 1 when it did not, 2 when the
// output cannot be read (a runner that changed its format must not pass).
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

// parse returns the scenarios of the runner's summary and the baseline
// sections of its report, or throws if the output has no summary.
export function parse(text) {
  // The runner colours its report with ANSI escapes.
  const lines = text.replace(/\x1b\[[0-9;]*m/g, '').split(/\r?\n/);
  const scenarios = [];
  const sections = { expected: [], stale: [], unexpected: [] };
  let inSummary = false;
  let section = null;
  let total = null;
  for (const line of lines) {
    if (line.trim() === '=== SUMMARY ===') {
      inSummary = true;
      continue;
    }
    if (!inSummary) continue;
    let m;
    if ((m = /^([✓✗]) (\S+): (\d+) passed, (\d+) failed/.exec(line))) {
      scenarios.push({ name: m[2], passed: Number(m[3]), failed: Number(m[4]) });
    } else if ((m = /^Total: (\d+) passed, (\d+) failed/.exec(line))) {
      total = { passed: Number(m[1]), failed: Number(m[2]) };
    } else if (line.startsWith('Expected failures (in baseline)')) {
      section = 'expected';
    } else if (line.startsWith('Stale baseline entries')) {
      section = 'stale';
    } else if (line.startsWith('Unexpected failures (not in baseline)')) {
      section = 'unexpected';
    } else if (section && (m = /^ {2}[~✓✗] (\S+)$/.exec(line))) {
      sections[section].push(m[1]);
    } else if (line.trim() !== '') {
      section = null;
    }
  }
  if (scenarios.length === 0 || total === null) {
    throw new Error('no "=== SUMMARY ===" with scenario lines and a Total line in the conformance output');
  }
  const sum = scenarios.reduce((n, s) => n + s.failed, 0);
  if (sum !== total.failed) {
    throw new Error(`the scenario lines add up to ${sum} failed checks, the Total line says ${total.failed}`);
  }
  return { scenarios, total, ...sections };
}

// render returns the lines to print: the verdict, the scenarios, the totals.
export function render(result, rc, baselineName = 'conformance-baseline.yml') {
  const expected = new Set(result.expected);
  const stale = new Set(result.stale);
  const unexpected = new Set(result.unexpected);
  // A failing scenario the report does not name as expected counts as
  // unexpected, whatever the report says.
  for (const s of result.scenarios) {
    if (s.failed > 0 && !expected.has(s.name)) unexpected.add(s.name);
  }
  const pass = rc === 0 && unexpected.size === 0 && stale.size === 0;
  const clean = result.scenarios.filter((s) => s.failed === 0 && !stale.has(s.name));
  const expectedChecks = result.scenarios
    .filter((s) => expected.has(s.name))
    .reduce((n, s) => n + s.failed, 0);

  const out = [];
  const counts = `${clean.length} scenarios passed, ${expected.size} failed as expected (${baselineName})`;
  if (pass) {
    out.push(`PASS: ${counts}; no unexpected failure, no stale baseline entry`);
  } else {
    const why = [];
    if (unexpected.size) why.push(`${unexpected.size} unexpected failure(s): ${[...unexpected].join(', ')}`);
    if (stale.size) why.push(`${stale.size} stale baseline entry(ies), passing now, delete them from ${baselineName}: ${[...stale].join(', ')}`);
    if (why.length === 0) why.push(`the runner exited ${rc} with no failure outside the baseline`);
    out.push(`FAIL: ${why.join('; ')} (${counts})`);
  }
  const width = Math.max(...result.scenarios.map((s) => s.name.length));
  for (const s of result.scenarios) {
    const name = s.name.padEnd(width);
    if (unexpected.has(s.name)) {
      out.push(`  ✗ ${name}  UNEXPECTED FAILURE: ${s.passed} passed, ${s.failed} failed`);
    } else if (stale.has(s.name)) {
      out.push(`  ! ${name}  passes, but is listed in ${baselineName} (stale entry)`);
    } else if (expected.has(s.name)) {
      out.push(`  ~ ${name}  expected failure (baseline): ${s.failed} failed`);
    } else {
      out.push(`  ✓ ${name}  ${s.passed} passed`);
    }
  }
  const other = result.total.failed - expectedChecks;
  out.push(
    `checks: ${result.total.passed} passed, ${result.total.failed} failed: ` +
      `${expectedChecks} in expected failures, ${other} elsewhere`,
  );
  return { pass, lines: out };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [file, rcArg, baselineName] = process.argv.slice(2);
  let result;
  try {
    result = parse(readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`[e2e] conformance: FAIL: cannot read the runner's output: ${e.message}`);
    process.exit(2);
  }
  const { pass, lines } = render(result, Number(rcArg), baselineName);
  lines.forEach((l, i) => console.error(i === 0 ? `[e2e] conformance: ${l}` : `[e2e] ${l}`));
  process.exit(pass ? 0 : 1);
}
