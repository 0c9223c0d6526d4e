// The apps SDK against a real junction binary: an app registered over the
// admin REST API, its backend (App behind a node:http server on loopback)
// receiving the real signed session.start, connecting with the key and the
// ticket, saying hello; a device (the TS client) installing, starting and
// stopping it; forged webhooks refused; a restarted backend reattaching
// with the stored resume token; a stop by the app.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, restCall } from '../dist/index.js';
import { App, MemoryResumeStore, StoppedError, WebhookVerifier, WebhookError, signWebhook } from '../dist/apps.js';
import { startProxy, startServer, waitFor } from './harness.mjs';

const quiet = { warn() {}, debug() {} };
const APP_ID = 'com.example.captions';

/**
 * backendServer starts a node:http server on loopback whose requests go to
 * the handler of the current App (swappable, as a restarted backend would
 * be), and records each request as received.
 */
async function backendServer(t) {
  const received = [];
  const state = { handler: undefined };
  const srv = http.createServer((req, res) => {
    // Record the request as received, and serve it with the App's node:http adapter.
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => received.push({ headers: { ...req.headers }, body: Buffer.concat(chunks).toString('utf8') }));
    if (!state.handler) {
      res.statusCode = 503;
      res.end();
      req.resume();
      return;
    }
    state.handler(req, res);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => srv.close(r)));
  return { url: `http://127.0.0.1:${srv.address().port}/junction`, received, state };
}

async function setup(t) {
  const srv = await startServer(t);
  const backend = await backendServer(t);
  const admin = await srv.token('root', 'console-1', { scope: 'admin' });
  const created = await restCall(srv.url, 'POST', '/api/v1/admin/apps', { id: APP_ID, name: 'Live captions', webhookUrl: backend.url, internal: true, scopes: ['read', 'write'], capabilities: ['display'] }, admin);
  assert.ok(created.key.key.startsWith('jk_'));
  assert.ok(created.webhookSecret.secret.startsWith('whsec_'));
  const device = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'glasses-1', { kind: 'glasses' }), WebSocket, logger: quiet });
  const states = [];
  device.on('app.session', (s) => states.push(s.state));
  await device.connect();
  t.after(() => device.close());
  await device.call('apps.install', { appId: APP_ID, scopes: ['read'] });
  return { srv, backend, admin, device, states, apiKey: created.key.key, secret: created.webhookSecret.secret };
}

function newApp(env, opts = {}) {
  const app = new App({ appId: APP_ID, apiKey: env.apiKey, webhookSecrets: [env.secret], url: env.srv.url, WebSocket, client: { minBackoffMs: 50, maxBackoffMs: 200, logger: quiet }, ...opts });
  env.backend.state.handler = app.nodeHandler();
  return app;
}

test('apps: session.start → connect with the ticket → hello; forged webhooks refused; the device stops it', async (t) => {
  const env = await setup(t);
  const sessions = [];
  const stops = [];
  const app = newApp(env, { onSession: (s) => sessions.push(s), onStop: (stop) => stops.push(stop) });
  t.after(() => app.close());

  const started = await env.device.call('apps.startSession', { appId: APP_ID, capabilities: ['display'] });
  assert.equal(started.session.state, 'starting');
  await waitFor(() => sessions.length === 1, 'onSession after the first hello');
  const s = sessions[0];
  assert.equal(s.id, started.session.id);
  assert.deepEqual(s.hello.scopes, ['read']);
  assert.deepEqual(s.hello.capabilities, ['display']);
  assert.equal(s.hello.device.kind, 'glasses');
  assert.ok(s.hello.resumeToken.startsWith('jr_'));
  assert.ok(s.userId.startsWith('pu_') && s.userId !== 'alice', 'the user is pseudonymous');
  await waitFor(() => env.states.includes('running'), 'the device sees running');
  const who = await s.call('conn.whoami');
  assert.ok(who.connId);

  // The real session.start as Junction signed it, then forgeries of it.
  const start = env.backend.received.find((r) => JSON.parse(r.body).type === 'session.start');
  assert.ok(start, 'session.start was delivered');
  const v = new WebhookVerifier({ secrets: [env.secret] });
  assert.equal(v.verify(start.headers, start.body).id, start.headers['webhook-id']);
  const post = (headers, body) => fetch(env.backend.url, { method: 'POST', headers, body }).then((r) => r.status);
  const base = { 'content-type': 'application/json', 'webhook-id': start.headers['webhook-id'], 'webhook-timestamp': start.headers['webhook-timestamp'] };
  const other = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
  assert.equal(await post({ ...base, 'webhook-signature': signWebhook(other, base['webhook-id'], Number(base['webhook-timestamp']), start.body) }, start.body), 401, 'signed with another secret');
  assert.equal(await post({ ...base, 'webhook-signature': start.headers['webhook-signature'] }, start.body + ' '), 401, 'a body changed after signing');
  const { 'webhook-signature': _drop, ...unsigned } = { ...base };
  assert.equal(await post(unsigned, start.body), 401, 'no signature');
  const stale = Math.floor(Date.now() / 1000) - 3600;
  assert.equal(await post({ ...base, 'webhook-timestamp': String(stale), 'webhook-signature': signWebhook(env.secret, base['webhook-id'], stale, start.body) }, start.body), 401, 'a timestamp an hour old');
  assert.throws(() => v.verify({ ...base, 'webhook-timestamp': String(stale), 'webhook-signature': signWebhook(env.secret, base['webhook-id'], stale, start.body) }, start.body), (e) => e instanceof WebhookError && e.reason === 'timestamp_too_old');
  assert.equal(await fetch(env.backend.url).then((r) => r.status), 405, 'not a POST');
  // The genuine one again: a retry of a handled delivery is answered 200 and not acted on.
  assert.equal(await post({ ...base, 'webhook-signature': start.headers['webhook-signature'] }, start.body), 200);
  assert.equal(sessions.length, 1, 'the replay started nothing');

  // The device stops it: app.stopped then close 1000 ends the handle; session.stop reaches onStop.
  await env.device.call('apps.stopSession', { appId: APP_ID, sessionId: s.id });
  await s.done();
  assert.ok(s.err instanceof StoppedError, String(s.err));
  assert.equal(s.err.reason, 'user_stopped');
  await waitFor(() => stops.length === 1, 'session.stop webhook');
  assert.equal(stops[0].sessionId, s.id);
  assert.equal(stops[0].reason, 'user_stopped');
  assert.equal(app.session(s.id), undefined);
  await assert.rejects(s.call('conn.whoami'), StoppedError);
});

test('apps: a restarted backend reattaches with the stored resume token; the app stops its session', async (t) => {
  const env = await setup(t);
  const store = new MemoryResumeStore();
  const app1 = newApp(env, { resume: store });
  t.after(() => app1.close());
  const started = await env.device.call('apps.startSession', { appId: APP_ID, capabilities: ['display'] });
  await waitFor(() => store.size === 1, 'the resume token saved after hello');
  const s1 = app1.session(started.session.id);
  const token1 = s1.hello.resumeToken;
  assert.equal(store.load(s1.id).token, token1);

  // The backend goes away: the session is transport_down on Junction, listed for the app's key.
  env.states.length = 0;
  await app1.close();
  assert.equal(s1.err?.name, 'DetachedError');
  await waitFor(() => env.states.includes('transport_down'), 'the device sees transport_down');
  const app2 = newApp(env, { resume: store });
  t.after(() => app2.close());
  const down = await app2.sessions('transport_down');
  assert.deepEqual(down.map((x) => x.id), [s1.id]);

  // A token that is not the stored one is refused for good.
  const forged = new MemoryResumeStore();
  forged.save({ sessionId: s1.id, token: 'jr_' + 'x'.repeat(40), url: env.srv.wsUrl });
  const app3 = newApp(env, { resume: forged });
  await assert.rejects(app3.attach(s1.id), /connect refused/);
  await app3.close();
  env.backend.state.handler = app2.nodeHandler();

  const { sessions, errors } = await app2.reattach();
  assert.deepEqual(errors, []);
  assert.equal(sessions.length, 1);
  const s2 = sessions[0];
  assert.equal(s2.id, s1.id);
  assert.deepEqual(s2.hello.scopes, ['read']);
  assert.notEqual(s2.hello.resumeToken, token1, 'each hello issues a new token');
  assert.equal(store.load(s2.id).token, s2.hello.resumeToken);
  await waitFor(() => env.states.includes('running'), 'the device sees running again');

  // The app stops its own session (REST, with the key): app_error, the token forgotten.
  const stopped = await s2.stop();
  assert.equal(stopped.alreadyStopped, false);
  assert.equal(stopped.session.stopReason, 'app_error');
  await s2.done();
  assert.ok(s2.err instanceof StoppedError);
  assert.equal(store.size, 0, 'a stopped session keeps no token');
  await waitFor(() => env.states.includes('stopped'), 'the device sees stopped');
  await assert.rejects(app2.attach(s1.id), /no resume token/);
});

test('apps: a lost connection is reattached on its own with the latest resume token', async (t) => {
  const env = await setup(t);
  const proxy = await startProxy(t, env.srv.url);
  // The store hands out the proxy's address, so that reattaches go through it (the ticket's first connection does not).
  const inner = new MemoryResumeStore();
  const store = { save: (r) => inner.save(r), load: (id) => { const r = inner.load(id); return r && { ...r, url: proxy.wsUrl }; }, delete: (id, tok) => inner.delete(id, tok) };
  const app = newApp(env, { resume: store });
  t.after(() => app.close());
  const started = await env.device.call('apps.startSession', { appId: APP_ID, capabilities: ['display'] });
  await waitFor(() => inner.size === 1, 'the first hello');
  const first = app.session(started.session.id);
  await first.close(); // detached: transport_down, token kept
  assert.equal(first.err.name, 'DetachedError');
  const s = await app.attach(started.session.id);
  assert.equal(proxy.count(), 1, 'attached through the proxy');
  const token = s.hello.resumeToken;
  env.states.length = 0;
  proxy.cut(); // no close frame: a transport loss
  await waitFor(() => s.reattaches === 1, 'the SDK reattaches by itself');
  assert.notEqual(s.hello.resumeToken, token);
  assert.equal(inner.load(s.id).token, s.hello.resumeToken, 'the newest token is stored');
  assert.equal(s.err, undefined);
  await waitFor(() => env.states.at(-1) === 'running', `the device sees running again (${env.states})`);
  assert.ok((await s.call('conn.whoami')).connId);
});

test('apps: verifier matches Junction\'s signing, rotation secrets, and refuses bad input', () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  // The Standard Webhooks specification's example (the same vector as the Go package's example).
  const headers = new Headers({ 'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek', 'webhook-timestamp': '1614265330', 'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' });
  const now = () => 1614265330_000;
  const v = new WebhookVerifier({ secrets: ['whsec_' + Buffer.alloc(32, 1).toString('base64'), secret], now });
  assert.deepEqual(v.verify(headers, '{"test": 2432232314}'), { id: 'msg_p5jXN8AQM9LWM0D4loKWxJek', timestampMs: 1614265330_000 });
  assert.throws(() => v.verify(headers, '{"test": 1}'), (e) => e.reason === 'signature_mismatch');
  assert.equal(signWebhook(secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}'), 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  const h = (over) => ({ 'webhook-id': 'msg_1', 'webhook-timestamp': '1614265330', 'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', ...over });
  assert.throws(() => v.verify(h({ 'webhook-timestamp': '-5' }), '{}'), (e) => e.reason === 'bad_timestamp');
  assert.throws(() => v.verify(h({ 'webhook-id': 'a b' }), '{}'), (e) => e.reason === 'bad_id');
  assert.throws(() => v.verify(h({ 'webhook-signature': 'v2,abc' }), '{}'), (e) => e.reason === 'bad_signatures');
  assert.throws(() => v.verify(h({ 'webhook-signature': 'v1,not base64!' }), '{}'), (e) => e.reason === 'bad_signatures');
  assert.throws(() => v.verify(h({ 'webhook-timestamp': '1614266000' }), '{}'), (e) => e.reason === 'timestamp_too_new');
  assert.throws(() => new WebhookVerifier({ secrets: ['whsec_short'] }), (e) => e.reason === 'bad_secret');
  assert.throws(() => new WebhookVerifier({ secrets: [] }), (e) => e.reason === 'bad_secret');
});
