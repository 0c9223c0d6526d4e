// The SDK's close-code table agrees with docs/PROTOCOL.md §6 (which a Go
// test checks against protocol.Disconnect).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DISCONNECTS, disconnectFor, reconnectAdvised } from '../dist/index.js';
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
