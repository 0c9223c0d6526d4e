// The built browser bundle (dist/junction.browser.js) in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core), loaded from a page
// this test serves, subscribing, publishing, resuming and calling a machine
// against a real junction binary.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { Client } from '../dist/index.js';
import { ROOMS, pkgDir, startProxy, startServer, waitFor } from './harness.mjs';

const CHROMIUM = process.env.JUNCTION_TEST_CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>junction sdk test</title></head>
<body><pre id="log"></pre>
<script type="module">
  import * as J from '/junction.browser.js';
  window.J = J;
  window.ready = true;
</script></body></html>`;

/** servePage serves the test page and the bundle on a loopback port. */
async function servePage(t) {
  const bundle = join(pkgDir, 'dist/junction.browser.js');
  assert.ok(existsSync(bundle), 'dist/junction.browser.js: run npm run build first');
  const srv = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (req.url === '/junction.browser.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(readFileSync(bundle));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => { srv.close(r); srv.closeAllConnections(); }));
  return `http://127.0.0.1:${srv.address().port}`;
}

async function launch(t) {
  const profile = mkdtempSync(join(tmpdir(), 'junction-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  t.after(async () => {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
  });
  return ctx;
}

test('the browser bundle subscribes, publishes, resumes and calls a machine', async (t) => {
  const origin = await servePage(t);
  // The page's origin is another port than the server's: allow it.
  const srv = await startServer(t, ROOMS + `web:\n  allowed_origins: ["${origin}"]\n`);
  const proxy = await startProxy(t, srv.url);
  const machine = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'mac-1', { kind: 'machine', scope: 'read,write,rpc.serve' }), WebSocket });
  await machine.serve('cmd.run', (req) => {
    req.progress({ line: 'working' });
    return { ran: req.params.cmd, caller: req.caller.deviceId };
  });
  await machine.connect();
  const node = new Client({ url: srv.wsUrl, token: await srv.token('bob', 'b1'), WebSocket });
  await node.connect();
  const fromBrowser = [];
  await node.subscribe('room:web', (p) => fromBrowser.push(p.data));
  t.after(() => Promise.all([machine.close(), node.close()]));

  const ctx = await launch(t);
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(origin + '/');
  await page.waitForFunction(() => window.ready === true);

  // Connect from the browser (the token travels as the junction.bearer subprotocol), through the proxy.
  const token = await srv.token('alice', 'tab-1');
  const welcome = await page.evaluate(async ({ url, token }) => {
    const c = new window.J.Client({ url, token, minBackoffMs: 20, maxBackoffMs: 200 });
    window.c = c;
    window.got = [];
    window.subscribed = [];
    await c.connect();
    await c.subscribe('room:web', (p) => window.got.push(p.data), { onSubscribed: (s) => window.subscribed.push(s) });
    await c.publish('room:web', { from: 'browser' });
    return c.welcome;
  }, { url: proxy.wsUrl, token });
  assert.equal(welcome.principal.userId, 'alice');
  assert.equal(welcome.principal.deviceId, 'tab-1');
  await waitFor(() => fromBrowser.length === 1, 'the browser\'s publication in Node');
  assert.deepEqual(fromBrowser[0], { from: 'browser' });

  // Node publishes; the browser receives, in order.
  for (let i = 1; i <= 3; i++) await node.publish('room:web', i);
  await page.waitForFunction(() => window.got.length === 4);

  // A network failure; publications while the browser is away are replayed on resume.
  // The proxy refuses the reconnects until the publications are made, so
  // that they are made while the browser is away.
  proxy.refuse(true);
  proxy.cut();
  await page.waitForFunction(() => window.c.state !== 'connected');
  for (let i = 4; i <= 8; i++) await node.publish('room:web', i);
  proxy.refuse(false);
  await page.waitForFunction(() => window.subscribed.length === 2);
  await node.publish('room:web', 9);
  await page.waitForFunction(() => window.got.length === 10);
  const got = await page.evaluate(() => window.got);
  assert.deepEqual(got, [{ from: 'browser' }, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(await page.evaluate(() => window.subscribed[1].recovered), true);

  // RPC from the browser to the Node machine, with progress.
  const res = await page.evaluate(async () => {
    const progress = [];
    const r = await window.c.callDevice('mac-1', 'cmd.run', { cmd: 'ls' }, { onProgress: (d) => progress.push(d) });
    return { r, progress };
  });
  assert.deepEqual(res, { r: { ran: 'ls', caller: 'tab-1' }, progress: [{ line: 'working' }] });

  // End-to-end crypto in the browser (Web Crypto randomness, the bundled @noble code).
  const roundTrip = await page.evaluate(() => {
    const { e2e } = window.J;
    const k = e2e.newDataKey();
    return e2e.fromUtf8(e2e.open(k, e2e.seal(k, e2e.utf8('in the browser'))));
  });
  assert.equal(roundTrip, 'in the browser');

  await page.evaluate(() => window.c.close());
  assert.deepEqual(errors, []);
});

test('a browser origin the server does not allow is refused', async (t) => {
  const origin = await servePage(t);
  const srv = await startServer(t); // no allowed_origins
  const ctx = await launch(t);
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  await page.goto(origin + '/');
  await page.waitForFunction(() => window.ready === true);
  const token = await srv.token('alice', 'tab-1');
  const out = await page.evaluate(async ({ url, token }) => {
    const c = new window.J.Client({ url, token, logger: { warn() {}, debug() {} } });
    try {
      await c.connect();
      return 'connected';
    } catch (e) {
      return `${e.name}: ${c.state}`;
    }
  }, { url: srv.wsUrl, token });
  // A browser does not see the 403: the connection just fails, and the first connect does not retry.
  assert.match(out, /: closed$/);
});
