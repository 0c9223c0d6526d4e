// End-to-end encryption, byte-compatible with the Go SDK: the TypeScript SDK
// seals, shares and signs, a Go program using client/crypto.go opens and
// verifies it, and seals, shares and signs the same inputs for the
// TypeScript SDK to open and compare.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { e2e } from '../dist/index.js';
import { goProgram } from './harness.mjs';

const b64 = e2e.toBase64;
const unb64 = e2e.fromBase64;

test('seal/open, shareKey/openKey and ed25519 agree with the Go SDK, both ways', () => {
  const dataKey = e2e.newDataKey();
  const plains = [new Uint8Array(0), e2e.utf8('hello, Go'), e2e.randomBytes(70_000)];
  const box = e2e.newBoxKey();
  const signing = e2e.newSigningKey();
  const msg = e2e.randomBytes(32);
  const input = {
    dataKey: b64(dataKey),
    plains: plains.map(b64),
    sealed: plains.map((p) => b64(e2e.seal(dataKey, p))),
    boxPublic: b64(box.publicKey),
    boxSecret: b64(box.secretKey),
    shared: b64(e2e.shareKey(dataKey, box.publicKey)),
    seed: b64(signing.seed),
    publicKey: b64(signing.publicKey),
    msg: b64(msg),
    sig: b64(e2e.sign(signing, msg)),
  };
  // The Go half fails (non-zero exit, message on stderr) when it cannot open or verify ours.
  const out = JSON.parse(execFileSync(goProgram('gocrypto'), [], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 16 << 20 }));
  assert.equal(out.sealed.length, plains.length);
  out.sealed.forEach((s, i) => {
    const sealed = unb64(s);
    assert.equal(sealed.length, plains[i].length + e2e.SEAL_OVERHEAD);
    assert.deepEqual(e2e.open(dataKey, sealed), plains[i], `Go-sealed #${i}`);
  });
  const shared = unb64(out.shared);
  assert.equal(shared.length, e2e.SHARE_OVERHEAD + e2e.KEY_SIZE);
  assert.deepEqual(e2e.openKey(shared, box.secretKey), dataKey);
  // ed25519 is deterministic: the same key and message give the same signature in both SDKs.
  assert.equal(out.sig, input.sig);
  assert.ok(e2e.verify(signing.publicKey, msg, unb64(out.sig)));
});

test('tampered or foreign ciphertext is refused', () => {
  const key = e2e.newDataKey();
  const sealed = e2e.seal(key, e2e.utf8('secret'));
  const bad = sealed.slice();
  bad[30] ^= 1;
  assert.throws(() => e2e.open(key, bad), e2e.DecryptError);
  assert.throws(() => e2e.open(e2e.newDataKey(), sealed), e2e.DecryptError);
  assert.throws(() => e2e.open(key, sealed.subarray(0, 39)), e2e.DecryptError);
  const box = e2e.newBoxKey();
  const shared = e2e.shareKey(key, box.publicKey);
  assert.throws(() => e2e.openKey(shared, e2e.newBoxKey().secretKey), e2e.DecryptError);
  assert.throws(() => e2e.openKey(shared.subarray(1), box.secretKey), e2e.DecryptError);
});
