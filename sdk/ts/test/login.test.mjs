// Key login, pairing, the in-band token refresh and the encrypted data API
// against a real junction binary.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, JunctionError, LoginSession, createPairing, e2e, login, me, pair } from '../dist/index.js';
import { ROOMS, startServer, waitFor } from './harness.mjs';

const quiet = { warn() {}, debug() {} };

test('key login, encrypted data, pairing, logout', async (t) => {
  const srv = await startServer(t);
  const key = e2e.newSigningKey();
  const tokens = await login(srv.url, key, { name: 'laptop', kind: 'browser' });
  assert.equal(tokens.created, true);
  const again = await login(srv.url, key, { name: 'laptop 2', kind: 'browser' });
  assert.equal(again.created ?? false, false);
  assert.equal(again.accountId, tokens.accountId);
  const who = await me(srv.url, tokens.accessToken);
  assert.equal(who.publicKey, e2e.toBase64(key.publicKey));
  // A wrong key's signature: a fresh account, never the first one.
  assert.notEqual((await login(srv.url, e2e.newSigningKey())).accountId, tokens.accountId);

  const session = new LoginSession(srv.url, tokens);
  const c = new Client({ url: srv.wsUrl, tokenProvider: session.tokenProvider, WebSocket });
  await c.connect();
  t.after(() => c.close());
  assert.equal(c.welcome.principal.userId, tokens.accountId);

  // Encrypted data: the server stores what the SDK sealed; the SDK opens it.
  const dataKey = e2e.newDataKey();
  const meta = e2e.seal(dataKey, e2e.utf8('{"title":"chat"}'));
  const s = await c.createSession(meta, undefined, { idem: 'create-1' });
  const s2 = await c.createSession(meta, undefined, { idem: 'create-1' });
  assert.equal(s2.id, s.id, 'a repeated idem returns the first session');
  // The same key with other params (a fresh nonce seals differently) is refused.
  await assert.rejects(c.createSession(e2e.seal(dataKey, e2e.utf8('{"title":"chat"}')), undefined, { idem: 'create-1' }), (e) => e.code === 'conflict');
  assert.equal(e2e.fromUtf8(e2e.open(dataKey, e2e.fromBase64((await c.session(s.id)).metadata.value))), '{"title":"chat"}');
  const up = await c.updateSession(s.id, 'metadata', e2e.seal(dataKey, e2e.utf8('v2')), 1);
  assert.equal(up.metadata.version, 2);
  await assert.rejects(c.updateSession(s.id, 'metadata', e2e.seal(dataKey, e2e.utf8('v3')), 1),
    (e) => e instanceof JunctionError && e.code === 'conflict' && e.details.currentVersion === 2);
  const msgs = await c.appendMessages(s.id, [{ localId: 'm1', body: e2e.seal(dataKey, e2e.utf8('one')) }, { body: e2e.seal(dataKey, e2e.utf8('two')) }]);
  assert.deepEqual(msgs.map((m) => m.seq), [1, 2]);
  const page = await c.messages(s.id, { afterSeq: 0 });
  assert.deepEqual(page.map((m) => e2e.fromUtf8(e2e.open(dataKey, e2e.fromBase64(m.body)))), ['one', 'two']);
  const ups = await c.updatesSince(0);
  assert.ok(ups.updates.some((u) => u.kind === 'message.created'));

  // Pairing: a new device with its own key joins the account.
  const code = await createPairing(srv.url, (await session.accessToken()));
  const devKey = e2e.newSigningKey();
  const paired = await pair(srv.url, code.code.toLowerCase(), { name: 'phone', kind: 'phone' }, devKey);
  assert.equal(paired.accountId, tokens.accountId);
  assert.notEqual(paired.deviceId, tokens.deviceId);
  await assert.rejects(pair(srv.url, code.code, { name: 'again', kind: 'phone' }), (e) => e.code === 'unauthorized', 'a code is single use');

  // Refresh over REST rotates the pair; logout closes the login's WebSocket with 4003.
  const before = session.tokens.refreshToken;
  await session.refresh();
  assert.notEqual(session.tokens.refreshToken, before);
  await session.logout();
  await c.done();
  assert.equal(c.closeCode, 4003);
  assert.equal(c.state, 'closed');
});

test('the token provider refreshes in-band before expiry (auth.refresh)', async (t) => {
  const srv = await startServer(t, ROOMS + `
  token_expiry_warning: 3s
auth:
  access_ttl: 5s
`);
  const key = e2e.newSigningKey();
  const session = new LoginSession(srv.url, await login(srv.url, key, { name: 'agent', kind: 'machine' }), { refreshBeforeMs: 0 });
  const reasons = [];
  const c = new Client({
    url: srv.wsUrl, WebSocket, logger: quiet,
    tokenProvider: (req) => (reasons.push(req.reason), session.tokenProvider(req)),
  });
  let reconnects = 0;
  c.onConnect((re) => { if (re) reconnects++; });
  const expiring = [];
  c.on('token.expiring', (d) => expiring.push(d.expiresAtMs));
  await c.connect();
  t.after(() => c.close());
  const first = (await c.call('conn.whoami')).principal.expiresAtMs;
  await waitFor(async () => (await c.call('conn.whoami')).principal.expiresAtMs > first, 'the in-band refresh');
  assert.deepEqual(reasons.slice(0, 2), ['connect', 'expiring']);
  assert.equal(expiring[0], first);
  // The first credential's expiry passes: the connection stays (no 4001, no reconnect).
  await waitFor(() => Date.now() > first + 500, 'the first token\'s expiry');
  assert.equal((await c.call('sys.ping')).pong, true);
  assert.equal(reconnects, 0);
  assert.equal(c.state, 'connected');
});

test('4001 (token expired) ends a client with a fixed token, and reconnects one with a token provider', async (t) => {
  const srv = await startServer(t, ROOMS + `
  token_expiry_warning: 1s
`);
  // A fixed token: the connection ends with 4001 at expiry, for good.
  const fixed = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'd1', { ttl: '2s' }), WebSocket, logger: quiet });
  await fixed.connect();
  await fixed.done();
  assert.equal(fixed.closeCode, 4001);

  // A provider whose in-band refresh fails: 4001, then a reconnect with a new token.
  let minted = 0;
  const c = new Client({
    url: srv.wsUrl, WebSocket, logger: quiet, minBackoffMs: 20, maxBackoffMs: 100,
    tokenProvider: async (req) => {
      if (req.reason === 'expiring') throw new Error('refresh service down');
      return srv.token('alice', 'd2', { ttl: minted++ === 0 ? '2s' : '1h' });
    },
  });
  let reconnects = 0;
  c.onConnect((re) => { if (re) reconnects++; });
  await c.connect();
  t.after(() => c.close());
  await waitFor(() => reconnects === 1, 'the reconnect after 4001');
  assert.equal(c.closeCode, 4001);
  assert.equal(minted, 2);
  assert.equal((await c.call('sys.ping')).pong, true);
});
