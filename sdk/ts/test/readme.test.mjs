// The README's examples run: the Node machine example serves cmd.run
// against a real server and the calling example calls it; the key-login
// example logs in, stores encrypted data and prints it back. The blocks are
// read from README.md, so an example that stops working fails here.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, restCall } from '../dist/index.js';
import { outputDir, pkgDir, startServer, waitFor } from './harness.mjs';

/** block returns the fenced js block that follows heading in README.md. */
function block(heading) {
  const readme = readFileSync(join(pkgDir, 'README.md'), 'utf8');
  const at = readme.indexOf(`## ${heading}`);
  assert.ok(at >= 0, `README has a section ${heading}`);
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `section ${heading} has a js block`);
  return m[1];
}

/** runExample writes an example beside the tests (importing the built package) and starts it with node. */
function runExample(t, name, code, env) {
  const dir = join(outputDir(), 'readme');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  const dist = join(pkgDir, 'dist/index.js');
  writeFileSync(file, code.replaceAll("from '@junctionhq/junction'", `from ${JSON.stringify(dist)}`).replaceAll("from 'ws'", `from ${JSON.stringify(join(pkgDir, 'node_modules/ws/wrapper.mjs'))}`));
  const p = spawn(process.execPath, [file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  p.stdout.on('data', (b) => (out.stdout += b));
  p.stderr.on('data', (b) => (out.stderr += b));
  const exited = new Promise((r) => p.once('exit', r));
  t.after(async () => {
    if (p.exitCode === null) p.kill();
    await exited;
  });
  return { p, out, exited };
}

test('README: the Node machine serves, the calling example calls it', async (t) => {
  const srv = await startServer(t);
  const token = await srv.token('alice', 'mac-1', { kind: 'machine', scope: 'read,write,rpc.serve' });
  const machine = block('Node: a machine serving methods').replaceAll("'ws://127.0.0.1:7700/ws'", JSON.stringify(srv.wsUrl));
  const { out } = runExample(t, 'machine.mjs', machine, { JUNCTION_TOKEN: token });
  const app = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'phone-1', { kind: 'phone' }), WebSocket });
  await app.connect();
  t.after(() => app.close());
  await waitFor(async () => (await app.rpcList('mac-1').catch(() => ({ methods: [] }))).methods.includes('cmd.run'), `the example machine to serve (stderr: ${out.stderr})`);

  // The calling example, with the README's client.
  const calling = `const client = globalThis.app;\nlet res;\n${block('Calling a machine').replace('const res =', 'res =')}\nreturn res;`;
  globalThis.app = app;
  const logged = [];
  const log = console.log;
  console.log = (...a) => logged.push(a.join(' '));
  let res;
  try {
    res = await new Function(`return (async () => { ${calling} })();`)();
  } finally {
    console.log = log;
    delete globalThis.app;
  }
  assert.deepEqual(res, { exit: 0 });
  assert.deepEqual(logged, ['starting ls']);
  await assert.rejects(app.callDevice('mac-1', 'cmd.run', { cmd: 5 }), (e) => e.code === 'bad_request');
});

test('README: key login, refreshing tokens and encrypted data', async (t) => {
  const srv = await startServer(t);
  const code = 'const save = (t) => { if (!t) throw new Error("no refresh token"); };\n' + block('Key login, a refreshing token provider, encrypted data')
    .replaceAll("'http://127.0.0.1:7700'", JSON.stringify(srv.url))
    .replaceAll("'ws://127.0.0.1:7700/ws'", JSON.stringify(srv.wsUrl)) + '\nawait client.close();\n';
  const { p, out, exited } = runExample(t, 'login.mjs', code, {});
  await exited;
  assert.equal(p.exitCode, 0, out.stderr);
  assert.equal(out.stdout.trim(), 'hello');
});

test('README: the app backend accepts a session.start, says hello and sees the stop', async (t) => {
  const srv = await startServer(t);
  const free = net.createServer();
  await new Promise((r) => free.listen(0, '127.0.0.1', r));
  const port = free.address().port;
  await new Promise((r) => free.close(r));
  const admin = await srv.token('root', 'console-1', { scope: 'admin' });
  const created = await restCall(srv.url, 'POST', '/api/v1/admin/apps', { id: 'com.example.captions', name: 'Live captions', webhookUrl: `http://127.0.0.1:${port}/junction`, internal: true, scopes: ['read'] }, admin);
  const code = block('App backend: webhooks and app sessions')
    .replaceAll("from '@junctionhq/junction/apps'", `from ${JSON.stringify(join(pkgDir, 'dist/apps.js'))}`)
    .replaceAll("'http://127.0.0.1:7700'", JSON.stringify(srv.url))
    .replaceAll('listen(8081,', `listen(${port},`);
  const { out } = runExample(t, 'app.mjs', code, { APP_API_KEY: created.key.key, APP_WEBHOOK_SECRET: created.webhookSecret.secret });
  await waitFor(() => out.stdout.includes('reattached 0'), `the example backend to start (stderr: ${out.stderr})`);
  const device = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'glasses-1', { kind: 'glasses' }), WebSocket });
  await device.connect();
  t.after(() => device.close());
  await device.call('apps.install', { appId: 'com.example.captions', scopes: ['read'] });
  const started = await device.call('apps.startSession', { appId: 'com.example.captions' });
  await waitFor(() => out.stdout.includes(`session running ${started.session.id} pu_`), `the session to run (stdout: ${out.stdout}, stderr: ${out.stderr})`);
  assert.match(out.stdout, /session running \S+ pu_\S+ \[ 'read' \]/);
  await device.call('apps.stopSession', { appId: 'com.example.captions', sessionId: started.session.id });
  await waitFor(() => out.stdout.includes(`stopped ${started.session.id} user_stopped`) && out.stdout.includes(`session.stop ${started.session.id} user_stopped`), `the stop (stdout: ${out.stdout})`);
});
