// The client against a real junction binary: connect, calls, errors,
// timeouts and AbortSignal, events, refused handshakes, close codes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, ClosedError, HandshakeError, JunctionError } from '../dist/index.js';
import { ROOMS, startProxy, startServer, waitFor } from './harness.mjs';

const quiet = { warn() {}, debug() {} };

test('connect, welcome, calls and error codes', async (t) => {
  const srv = await startServer(t);
  const frames = [];
  const c = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'tab-1'), WebSocket, onFrame: (sent, f) => frames.push([sent, JSON.parse(f)]) });
  const welcomes = [];
  c.on('welcome', (w) => welcomes.push(w));
  await c.connect();
  t.after(() => c.close());
  assert.equal(c.state, 'connected');
  assert.equal(c.welcome.principal.userId, 'alice');
  assert.equal(c.welcome.principal.deviceId, 'tab-1');
  assert.equal(welcomes.length, 1, 'the welcome event is delivered to handlers');

  const pong = await c.call('sys.ping');
  assert.equal(pong.pong, true);
  const who = await c.call('conn.whoami');
  assert.equal(who.connId, c.welcome.connId);

  await assert.rejects(c.call('no.such'), (e) => e instanceof JunctionError && e.code === 'unknown_method' && !e.retryable);
  await assert.rejects(c.call('channel.subscribe', { topic: 'bad topic!' }), (e) => e.code === 'bad_request' && e.details?.field === 'topic');
  await assert.rejects(c.call('channel.subscribe', { topic: 'nosuchns:x' }), (e) => e.code === 'not_found');

  // The first frame received is the welcome; requests went out as frames.
  assert.equal(frames[0][0], false);
  assert.equal(frames[0][1].event, 'welcome');
  assert.ok(frames.some(([sent, f]) => sent && f.type === 'req' && f.method === 'sys.ping'));
});

test('timeouts and AbortSignal', async (t) => {
  const srv = await startServer(t);
  // A machine that never answers hold.forever, so a call waits on the gateway.
  const m = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'mac-1', { kind: 'machine', scope: 'read,write,rpc.serve' }), WebSocket });
  let started = 0;
  await m.serve('hold.forever', (req) => new Promise((resolve) => { started++; req.signal.addEventListener('abort', () => resolve(null)); }));
  await m.connect();
  t.after(() => m.close());
  const c = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'tab-1'), WebSocket, callTimeoutMs: 60_000 });
  await c.connect();
  t.after(() => c.close());

  // A local timeout: the call (not answered by the gateway within 300 ms) fails with code timeout.
  await assert.rejects(c.call('rpc.call', { target: { deviceId: 'mac-1' }, method: 'hold.forever', timeoutMs: 60_000 }, { timeoutMs: 300 }),
    (e) => e instanceof JunctionError && e.code === 'timeout');

  // AbortSignal: the call rejects with the signal's reason.
  const ac = new AbortController();
  const p = c.call('rpc.call', { target: { deviceId: 'mac-1' }, method: 'hold.forever', timeoutMs: 60_000 }, { signal: ac.signal });
  await waitFor(() => started === 2, 'the second call to reach the machine');
  ac.abort(new Error('user gave up'));
  await assert.rejects(p, /user gave up/);
  // An already aborted signal rejects at once.
  await assert.rejects(c.call('sys.ping', undefined, { signal: AbortSignal.abort(new Error('already')) }), /already/);
  // The connection is still usable.
  assert.equal((await c.call('sys.ping')).pong, true);
  // Closing the caller ends its calls in flight at the gateway (the server then drains at once).
  await c.close();
  await m.close();
});

test('a refused handshake is a HandshakeError with the server\'s status and code', async (t) => {
  const srv = await startServer(t);
  const c = new Client({ url: srv.wsUrl, token: 'not-a-token', WebSocket, logger: quiet });
  await assert.rejects(c.connect(), (e) => e instanceof HandshakeError && e.status === 401 && e.error?.code === 'unauthorized');
  assert.equal(c.state, 'closed');
  await assert.rejects(c.call('sys.ping'), ClosedError);
});

test('a terminal close code (4009 replaced) closes the client instead of reconnecting', async (t) => {
  const srv = await startServer(t);
  const token = await srv.token('alice', 'tab-1');
  const states = [];
  const a = new Client({ url: srv.wsUrl, token, WebSocket, minBackoffMs: 10, onState: (s) => states.push(s) });
  await a.connect();
  const b = new Client({ url: srv.wsUrl, token, WebSocket });
  await b.connect();
  t.after(() => b.close());
  await a.done();
  assert.equal(a.closeCode, 4009);
  assert.equal(a.state, 'closed');
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'closed']);
  await assert.rejects(a.call('sys.ping'), ClosedError);
});

test('server shutdown (1012): not terminal, the client reconnects to the restarted server', async (t) => {
  const srv = await startServer(t);
  const token = await srv.token('alice', 'tab-1');
  const c = new Client({ url: srv.wsUrl, token, WebSocket, minBackoffMs: 20, maxBackoffMs: 100, logger: quiet });
  const shutdowns = [];
  c.on('server.shutdown', (d) => shutdowns.push(d));
  let reconnects = 0;
  c.onConnect((re) => { if (re) reconnects++; });
  await c.connect();
  t.after(() => c.close());
  await srv.stop('SIGTERM');
  await waitFor(() => c.state !== 'connected', 'the disconnect');
  assert.equal(shutdowns.length, 1, 'server.shutdown was delivered');
  assert.equal(c.closeCode, 1012);
  assert.notEqual(c.state, 'closed', 'a 1012 is not terminal');
  await assert.rejects(c.call('sys.ping'), (e) => e.code === 'unavailable' && e.retryable);
  assert.equal(reconnects, 0);
  await srv.start();
  await waitFor(() => reconnects === 1, 'the reconnect to the restarted server');
  assert.equal(c.state, 'connected');
  assert.equal((await c.call('sys.ping')).pong, true);
});

test('a silent server (stalled network) is detected and the client reconnects', async (t) => {
  const srv = await startServer(t, ROOMS + `  heartbeat_interval: 1s\n  heartbeat_timeout: 1s\n`);
  const proxy = await startProxy(t, srv.url);
  const states = [];
  const c = new Client({ url: proxy.wsUrl, token: await srv.token('alice', 'tab-1'), WebSocket, minBackoffMs: 20, maxBackoffMs: 100, logger: quiet,
    onState: (s, err) => states.push([s, err?.message ?? ''])});
  let reconnects = 0;
  c.onConnect((re) => { if (re) reconnects++; });
  await c.connect();
  t.after(() => c.close());
  assert.equal(c.welcome.heartbeatMs, 1000);
  proxy.stall(); // nothing more arrives, and nothing is closed
  await waitFor(() => reconnects === 1, 'the reconnect after the silence');
  const drop = states.find(([s]) => s === 'disconnected');
  assert.match(drop[1], /server silent/);
  assert.equal(c.closeCode, 0);
  assert.equal((await c.call('sys.ping')).pong, true);
});

test('a refused reconnect with Retry-After (503, server full) is retried, not terminal', async (t) => {
  const srv = await startServer(t, ROOMS + `  max_connections: 1\n`);
  const proxy = await startProxy(t, srv.url);
  const refusals = [];
  const a = new Client({ url: proxy.wsUrl, token: await srv.token('alice', 'a1'), WebSocket, minBackoffMs: 20, maxBackoffMs: 100, logger: quiet,
    onState: (s, err) => err instanceof HandshakeError && refusals.push(err) });
  let reconnects = 0;
  a.onConnect((re) => { if (re) reconnects++; });
  await a.connect();
  t.after(() => a.close());
  proxy.refuse(true); // a's reconnects fail before reaching the server...
  proxy.cut();
  // ...while b takes the only slot (once the server released a's).
  let b;
  await waitFor(async () => {
    const x = new Client({ url: srv.wsUrl, token: await srv.token('bob', 'b1'), WebSocket, reconnect: false, logger: quiet });
    try {
      await x.connect();
      b = x;
      return true;
    } catch {
      return false;
    }
  }, 'b to connect');
  proxy.refuse(false);
  await waitFor(() => refusals.length > 0, 'a\'s refused reconnect');
  assert.equal(refusals[0].status, 503);
  assert.equal(refusals[0].error.code, 'unavailable');
  assert.ok(refusals[0].retryAfterMs > 0, `retryAfterMs ${refusals[0].retryAfterMs}`);
  assert.equal(reconnects, 0);
  await b.close();
  await waitFor(() => reconnects === 1, 'a\'s reconnect once the slot is free');
});
