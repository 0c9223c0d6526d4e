// RPC against a real junction binary: a Node process serving methods as a
// machine, called by an app with progress, errors, cancel, and
// re-registration after a reconnect, TypeScript at both ends (no Go client
// on the path); and across languages with a Go SDK machine
// (test/testdata/gomachine).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, JunctionError } from '../dist/index.js';
import { spawn } from 'node:child_process';
import { goProgram, startProxy, startServer, waitFor } from './harness.mjs';

const quiet = { warn() {}, debug() {} };

async function machineAndApp(t, srv, url = srv.wsUrl) {
  const m = new Client({ url, token: await srv.token('alice', 'mac-1', { kind: 'machine', scope: 'read,write,rpc.serve' }), WebSocket, minBackoffMs: 20, maxBackoffMs: 200, logger: quiet });
  const app = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'phone-1', { kind: 'phone' }), WebSocket });
  return { m, app, close: () => Promise.all([app.close(), m.close()]) };
}

test('call a TypeScript machine: result, progress, caller, errors', async (t) => {
  const srv = await startServer(t);
  const { m, app, close } = await machineAndApp(t, srv);
  const seen = [];
  await m.serve('cmd.run', async (req) => {
    seen.push({ caller: req.caller, params: req.params });
    for (let i = 1; i <= 3; i++) req.progress({ line: `step ${i}` });
    return { exit: 0, echo: req.params.cmd };
  });
  await m.serve('cmd.fail', () => {
    throw new JunctionError({ code: 'not_found', message: 'no such file', details: { path: '/x' } });
  });
  await m.serve('cmd.crash', () => {
    throw new Error('secret internals');
  });
  await m.connect();
  await app.connect();
  t.after(close);

  assert.deepEqual((await app.rpcList('mac-1')).methods, ['cmd.crash', 'cmd.fail', 'cmd.run']);
  const progress = [];
  const res = await app.callDevice('mac-1', 'cmd.run', { cmd: 'ls' }, { onProgress: (d) => progress.push(d.line) });
  assert.deepEqual(res, { exit: 0, echo: 'ls' });
  assert.deepEqual(progress, ['step 1', 'step 2', 'step 3'], 'every progress event before the result, in order');
  assert.equal(seen[0].caller.userId, 'alice');
  assert.equal(seen[0].caller.deviceId, 'phone-1');

  await assert.rejects(app.callDevice('mac-1', 'cmd.fail', {}), (e) => e instanceof JunctionError && e.code === 'not_found' && e.message === 'no such file' && e.details.path === '/x');
  await assert.rejects(app.callDevice('mac-1', 'cmd.crash', {}), (e) => e.code === 'internal' && !/secret/.test(e.message));
  await assert.rejects(app.callDevice('mac-1', 'cmd.none', {}), (e) => e.code === 'unknown_method');
  // Another user's device without a grant.
  const eve = new Client({ url: srv.wsUrl, token: await srv.token('eve', 'e1'), WebSocket });
  await eve.connect();
  t.after(() => eve.close());
  await assert.rejects(eve.callDevice('mac-1', 'cmd.run', {}), (e) => e.code === 'forbidden');
});

test('cancel with AbortSignal: the machine sees its signal abort, the caller rejects', async (t) => {
  const srv = await startServer(t);
  const { m, app, close } = await machineAndApp(t, srv);
  let running = 0;
  let cancelled = 0;
  await m.serve('job.long', (req) => new Promise((resolve) => {
    running++;
    req.progress({ started: true });
    req.signal.addEventListener('abort', () => {
      cancelled++;
      resolve('too late');
    });
  }));
  await m.connect();
  await app.connect();
  t.after(close);
  const ac = new AbortController();
  const p = app.callDevice('mac-1', 'job.long', {}, { signal: ac.signal, timeoutMs: 60_000, onProgress: () => ac.abort(new Error('stop it')) });
  await assert.rejects(p, /stop it/);
  await waitFor(() => cancelled === 1, 'the machine\'s handler to be cancelled');
  assert.equal(running, 1);

  // A gateway timeout: the target is cancelled too, the caller gets code timeout.
  const t0 = cancelled;
  await assert.rejects(app.callDevice('mac-1', 'job.long', {}, { timeoutMs: 200 }), (e) => e.code === 'timeout');
  await waitFor(() => cancelled === t0 + 1, 'the timed-out call to be cancelled');
});

test('a machine registers its methods again after every reconnect', async (t) => {
  const srv = await startServer(t);
  const proxy = await startProxy(t, srv.url);
  const { m, app, close } = await machineAndApp(t, srv, proxy.wsUrl);
  await m.serve('sys.hello', (req) => `hello ${req.params.name}`);
  let reconnects = 0;
  m.onConnect((re) => { if (re) reconnects++; });
  await m.connect();
  await app.connect();
  t.after(close);
  assert.equal(await app.callDevice('mac-1', 'sys.hello', { name: 'a' }), 'hello a');
  for (let i = 1; i <= 2; i++) {
    proxy.cut();
    await waitFor(() => reconnects === i, `reconnect ${i}`);
    assert.equal(await app.callDevice('mac-1', 'sys.hello', { name: `r${i}` }, { timeoutMs: 10_000 }), `hello r${i}`);
  }
  // A method served after connect is registered at once.
  await m.serve('sys.bye', () => 'bye');
  assert.equal(await app.callDevice('mac-1', 'sys.bye'), 'bye');
});

test('concurrent calls beyond maxHandlers are answered rate_limited', async (t) => {
  const srv = await startServer(t);
  const m = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'mac-1', { kind: 'machine', scope: 'read,write,rpc.serve' }), WebSocket, maxHandlers: 2 });
  const app = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'phone-1', { kind: 'phone' }), WebSocket });
  const release = [];
  await m.serve('slow.op', () => new Promise((r) => release.push(r)));
  await m.connect();
  await app.connect();
  t.after(() => Promise.all([app.close(), m.close()]));
  const calls = [1, 2].map(() => app.callDevice('mac-1', 'slow.op'));
  await waitFor(() => release.length === 2, 'two calls in the machine');
  await assert.rejects(app.callDevice('mac-1', 'slow.op'), (e) => e.code === 'rate_limited' && e.retryable && e.retryAfterMs === 100);
  release.forEach((r, i) => r(i));
  assert.deepEqual(await Promise.all(calls), [0, 1]);
});

test('across languages: a TypeScript app calls a Go SDK machine, and the Go machine calls a TypeScript one', async (t) => {
  const srv = await startServer(t);
  const tsMachine = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'ts-mac', { kind: 'machine', scope: 'read,write,rpc.serve' }), WebSocket });
  await tsMachine.serve('ts.echo', (req) => {
    req.progress({ from: 'ts' });
    return { n: req.params.n * 6, caller: req.caller.deviceId };
  });
  await tsMachine.connect();
  t.after(() => tsMachine.close());
  const goToken = await srv.token('alice', 'go-mac', { kind: 'machine', scope: 'read,write,rpc.serve' });
  const go = spawn(goProgram('gomachine'), ['ts-mac'], {
    env: { ...process.env, JUNCTION_URL: srv.wsUrl, JUNCTION_TOKEN: goToken }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((r) => go.once('exit', r));
  t.after(async () => {
    go.kill('SIGINT');
    await exited;
  });
  let out = '';
  let errOut = '';
  go.stdout.on('data', (b) => (out += b));
  go.stderr.on('data', (b) => (errOut += b));
  // The Go machine's own call to ts.echo, printed as its second line.
  await waitFor(() => out.split('\n').length > 2 || go.exitCode !== null, 'the Go machine\'s call');
  assert.equal(go.exitCode, null, `gomachine exited: ${errOut}`);
  const [ready, line] = out.split('\n');
  assert.equal(ready, 'ready');
  assert.deepEqual(JSON.parse(line), { result: { n: 42, caller: 'go-mac' }, progress: [{ from: 'ts' }] });

  const app = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'phone-1', { kind: 'phone' }), WebSocket });
  await app.connect();
  t.after(() => app.close());
  const progress = [];
  const res = await app.callDevice('go-mac', 'go.echo', { hello: 'go' }, { onProgress: (d) => progress.push(d) });
  assert.deepEqual(res, { echo: { hello: 'go' }, caller: 'phone-1' });
  assert.deepEqual(progress, [{ from: 'go' }]);
});
