// Tests for conformance-summary.mjs against captured runner output
// (testdata/conformance-*.txt, in the format of conformance 0.1.16):
//   node --test tests/node/conformance-summary.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse, render } from './conformance-summary.mjs';

const capture = (name) => readFileSync(new URL(`testdata/${name}`, import.meta.url), 'utf8');

test('a run that meets the baseline prints PASS first and marks the baseline failures expected', () => {
  const r = parse(capture('conformance-pass.txt'));
  const { pass, lines } = render(r, 0);
  assert.equal(pass, true);
  assert.match(lines[0], /^PASS: 9 scenarios passed, 20 failed as expected \(conformance-baseline\.yml\)/);
  const expected = lines.filter((l) => l.startsWith('  ~ '));
  assert.equal(expected.length, 20);
  for (const l of expected) assert.match(l, /expected failure \(baseline\)/);
  assert.ok(lines.some((l) => /^ {2}~ tools-call-with-logging +expected failure \(baseline\): 2 failed$/.test(l)));
  assert.equal(lines.filter((l) => l.startsWith('  ✗ ')).length, 0, 'no scenario is shown as a plain failure');
  assert.equal(lines.at(-1), 'checks: 14 passed, 22 failed: 22 in expected failures, 0 elsewhere');
});

test('an unexpected failure and a stale entry print FAIL first, naming both', () => {
  const r = parse(capture('conformance-fail.txt'));
  const { pass, lines } = render(r, 1);
  assert.equal(pass, false);
  assert.match(lines[0], /^FAIL: 1 unexpected failure\(s\): ping; 1 stale baseline entry\(ies\).*: resources-subscribe/);
  assert.ok(lines.some((l) => /^ {2}✗ ping +UNEXPECTED FAILURE/.test(l)));
  assert.ok(lines.some((l) => /^ {2}! resources-subscribe +passes, but is listed/.test(l)));
  assert.equal(lines.at(-1), 'checks: 14 passed, 22 failed: 21 in expected failures, 1 elsewhere');
});

test('a failing scenario missing from the expected list counts as unexpected, and a non-zero exit fails', () => {
  const r = parse(capture('conformance-pass.txt'));
  r.expected = r.expected.filter((s) => s !== 'tools-call-image');
  let { pass, lines } = render(r, 0);
  assert.equal(pass, false);
  assert.match(lines[0], /^FAIL: 1 unexpected failure\(s\): tools-call-image/);
  ({ pass, lines } = render(parse(capture('conformance-pass.txt')), 1));
  assert.equal(pass, false);
  assert.match(lines[0], /^FAIL: the runner exited 1/);
});

test('output without the runner summary is refused, not passed', () => {
  assert.throws(() => parse('Running active suite (0 scenarios)\n'), /no "=== SUMMARY ==="/);
  const broken = capture('conformance-pass.txt').replace('Total: 14 passed, 22 failed', 'Total: 14 passed, 21 failed');
  assert.throws(() => parse(broken), /add up to 22 failed checks, the Total line says 21/);
});
