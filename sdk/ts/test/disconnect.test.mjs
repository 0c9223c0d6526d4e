// The SDK's close-code table agrees with docs/PROTOCOL.md §6 (which a Go
// test checks against protocol.Disconnect).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DISCONNECTS, backoffDelay, disconnectFor, reconnectAdvised, shutdownDelay } from '../dist/index.js';
import { repoDir } from './harness.mjs';

test('close codes match docs/PROTOCOL.md §6', () => {
  const doc = readFileSync(join(repoDir, 'docs/PROTOCOL.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## 6. Close codes'), doc.indexOf('## 7.'));
  const rows = [...section.matchAll(/^\| (\d{4}) \| ([^|]+) \| ([^|]+) \|$/gm)].map((m) => ({ code: Number(m[1]), advice: m[3].trim() }));
  assert.ok(rows.length >= 15, `found ${rows.length} rows`);
  assert.deepEqual(rows.map((r) => r.code), DISCONNECTS.map((d) => d.code));
  for (const r of rows) {
    assert.equal(reconnectAdvised(r.code), r.advice.startsWith('yes'), `code ${r.code}: "${r.advice}"`);
  }
  assert.equal(disconnectFor(4050).reconnect, 'no', 'an unknown 40xx code is terminal');
  assert.equal(disconnectFor(4150).reconnect, 'backoff');
});

test('backoff: jitter between min and a doubling ceiling capped at max; shutdown waits reconnectAfterMs plus jitter', () => {
  const lo = () => 0;
  const hi = () => 0.999999;
  const cases = [
    // attempt, ceiling with min 250 and max 30000
    [0, 500], [1, 1000], [2, 2000], [5, 16000], [6, 30000], [50, 30000],
  ];
  for (const [n, ceil] of cases) {
    assert.equal(backoffDelay(n, 250, 30_000, lo), 250, `attempt ${n}: the floor`);
    assert.ok(Math.abs(backoffDelay(n, 250, 30_000, hi) - ceil) < 0.1, `attempt ${n}: ceiling ${backoffDelay(n, 250, 30_000, hi)}, want ${ceil}`);
  }
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(3, 250, 30_000);
    assert.ok(d >= 250 && d <= 4000, `random delay ${d}`);
  }
  assert.equal(backoffDelay(4, 100, 100, hi), 100, 'max below the doubling');
  assert.equal(shutdownDelay(1000, 250, lo), 1000);
  assert.ok(Math.abs(shutdownDelay(1000, 250, hi) - 1250) < 0.1);
  assert.ok(Math.abs(shutdownDelay(100, 250, hi) - 350) < 0.1, 'the jitter is at least minBackoff');
});
