// The console (served by a real junction binary at /) in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core): every page
// exercised against live traffic from Node SDK clients, keyboard navigation,
// 375 px and 1440 px widths with screenshots, no request leaving the
// server's origin, and the size budget.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { Client, createPairing, e2e, login, me, pair } from '../../sdk/ts/dist/index.js';
import { App, StoppedError } from '../../sdk/ts/dist/apps.js';
import { ROOMS, junctionBinary, startServer, waitFor } from '../../sdk/ts/test/harness.mjs';

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const assetsDir = resolve(here, '../internal/web/console/assets');
const OUT = join(here, 'test-output');
mkdirSync(OUT, { recursive: true });

const CHROMIUM = process.env.JUNCTION_TEST_CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const PAGES = [['/', 'Overview'], ['/connections', 'Connections'], ['/channels', 'Channels'], ['/rpc', 'RPC'], ['/accounts', 'Accounts'], ['/apps', 'Apps'], ['/lockdown', 'Lockdown']];
const BUDGET = 150 * 1024;

// A server with the admin API (the admin branch) publishes admin:stats
// itself and lists connections; an older one has neither: there the test
// declares an admin namespace and feeds the Overview's charts itself, with
// the documented AdminStats shape.
const hasAdminAPI = execFileSync(junctionBinary(), ['contract', 'openapi']).toString().includes('/api/v1/admin/connections');
// 127.0.0.1 is a trusted proxy: a request with X-Forwarded-For from a
// public address is a non-LAN client, as lockdown sees it.
const CONFIG = ROOMS + (hasAdminAPI ? '' : `
    - pattern: "admin:{name}"
      subscribe: ["scope=admin"]
      publish: ["scope=admin"]
      history_size: 60
      history_ttl: 2m
`) + `web:
  trusted_proxies: ["127.0.0.1/32"]
`;

async function launch(t, server) {
  const profile = mkdtempSync(join(tmpdir(), 'junction-console-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1440, height: 900 } });
  t.after(async () => {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
  });
  // Every request the console makes must go to the server's own origin:
  // anything else is recorded and refused.
  const origin = new URL(server.url).origin;
  const external = [];
  await ctx.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith(origin + '/') || u.startsWith('data:')) return route.continue();
    external.push(u);
    return route.abort();
  });
  ctx.on('websocket', (ws) => {
    if (!ws.url().startsWith(origin.replace(/^http/, 'ws') + '/')) external.push(ws.url());
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The browser logs a refused REST call (an admin endpoint an older server
  // lacks, a 403 for a non-admin) as a console error: the pages show those;
  // a console file that fails to load is an error.
  page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()));
  page.on('response', (r) => r.status() >= 400 && !new URL(r.url()).pathname.startsWith('/api/') && errors.push(`${r.status()} ${r.url()}`));
  page.on('dialog', (d) => d.accept());
  return { page, external, errors };
}

async function signInWithToken(page, server, token) {
  await page.goto(server.url + '/');
  await page.fill('#token', token);
  await page.click('text=Sign in with token');
  await page.waitForSelector('nav a[aria-current="page"]');
}

/** goTo opens a page from the navigation and waits for its heading. */
async function goTo(page, title) {
  await page.click(`nav a:text-is("${title}")`);
  await page.waitForSelector(`main h1:text-is("${title}")`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}

test('the console: channels live, RPC to a Node machine, lockdown, connections, overview; no external request', async (t) => {
  const srv = await startServer(t, CONFIG);
  const calls = [];
  const machine = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'mac-1', { kind: 'machine', scope: 'read,write,rpc.serve' }), WebSocket });
  await machine.serve('cmd.run', async (req) => {
    calls.push({ params: req.params, caller: req.caller });
    req.progress({ line: 'working' });
    return { ran: req.params.cmd, exit: 0 };
  });
  let cancelled = 0;
  await machine.serve('cmd.wait', (req) => new Promise((_, reject) => {
    req.progress({ waiting: true });
    req.signal.addEventListener('abort', () => (cancelled++, reject(new Error('cancelled'))));
  }));
  await machine.connect();
  const other = new Client({ url: srv.wsUrl, token: await srv.token('bob', 'b1'), WebSocket });
  await other.connect();
  const seenByOther = [];
  await other.subscribe('room:lobby', (p) => seenByOther.push(p.data));
  t.after(() => Promise.all([machine.close(), other.close()]));

  const { page, external, errors } = await launch(t, srv);
  await signInWithToken(page, srv, await srv.token('alice', 'console', { scope: 'admin,read,write' }));
  assert.equal(await page.textContent('#conn-state'), 'connected');

  // Overview: live charts from admin:stats.
  let feeder;
  if (!hasAdminAPI) {
    feeder = new Client({ url: srv.wsUrl, token: await srv.token('ops', 'stats', { scope: 'admin,read,write' }), WebSocket });
    await feeder.connect();
    t.after(() => feeder.close());
  }
  let n = 0;
  await waitFor(async () => {
    if (feeder) {
      n++;
      await feeder.publish('admin:stats', {
        nodeId: 'node-a', at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(), intervalMs: 1000, connections: 3 + n,
        connectionsByKind: { browser: 1, machine: 1, other: 1 + n }, publications: n, publicationsPerSec: n, deliveries: 2 * n, deliveriesPerSec: 2 * n,
        requests: 5, requestsPerSec: 5, requestLatency: { p50Ms: 0.2, p99Ms: 1.5 }, rpcCalls: 1, rpcCallsPerSec: 1, rpcLatency: { p50Ms: 3, p99Ms: 9 },
      });
    }
    return (await page.locator('.chart[data-chart="Connections"] polyline').count()) > 0 && (await page.textContent('.chart[data-chart="Connections"] .chart-value')) !== '–';
  }, 'the Overview chart to draw admin:stats', 20_000);
  assert.match(await page.textContent('main .status'), /Live: last update/);
  assert.match(await page.textContent('main dl.info'), /Signed in asalice \/ console/);
  await shot(page, 'overview-live-1440');

  // Channels: a publication from another client appears live; the console publishes; history; presence.
  await goTo(page, 'Channels');
  await page.fill('#ch-topic', 'room:lobby');
  await page.click('button:text-is("Subscribe")');
  await page.waitForSelector('text=Subscribed to room:lobby at offset');
  await other.publish('room:lobby', { from: 'bob', n: 1 });
  await page.waitForSelector('#ch-log li:has-text("\\"from\\":\\"bob\\"")');
  await page.fill('#ch-data', '{"from": "console"}');
  await page.click('button:text-is("Publish")');
  await waitFor(() => seenByOther.some((d) => d.from === 'console'), 'the console\'s publication in Node');
  await page.waitForSelector('#ch-log li:has-text("\\"from\\":\\"console\\"")');
  await page.click('button:text-is("History")');
  await page.waitForSelector('main table caption:has-text("History of room:lobby")');
  assert.equal(await page.locator('main .out tbody tr').count(), 2);
  await page.click('button:text-is("Presence")');
  await page.waitForSelector('main table caption:has-text("Presence in room:lobby")');
  const present = await page.textContent('main .out tbody');
  assert.match(present, /console/);
  assert.match(present, /b1/);
  if (hasAdminAPI) {
    await page.click('main section:first-of-type button:text-is("Refresh")');
    await page.waitForSelector('main table caption:text-is("Topics with subscribers")');
    assert.match(await page.textContent('main .active tbody'), /room:lobby/);
  }
  await shot(page, 'channels-live-1440');

  // RPC: the methods of the Node machine, a call with params, its progress and result.
  await goTo(page, 'RPC');
  await page.fill('#rpc-device', 'mac-1');
  await page.click('button:text-is("List methods")');
  await page.waitForSelector('text=/mac-1 serves: .*cmd\\.run/');
  assert.match(await page.textContent('main section:nth-of-type(2) > p.status'), /^mac-1 serves: (cmd\.run, cmd\.wait|cmd\.wait, cmd\.run)\.$/);
  await page.fill('#rpc-method', 'cmd.run');
  await page.fill('#rpc-params', '{"cmd": "uptime"}');
  await page.click('button:text-is("Call")');
  await page.waitForSelector('#rpc-result:has-text("uptime")');
  assert.deepEqual(JSON.parse(await page.textContent('#rpc-result')), { ran: 'uptime', exit: 0 });
  assert.equal(await page.textContent('#rpc-progress li'), '{"line":"working"}');
  assert.deepEqual(calls.map((c) => [c.params, c.caller.deviceId]), [[{ cmd: 'uptime' }, 'console']]);
  // Cancel: the machine's signal aborts, the console says so.
  await page.fill('#rpc-method', 'cmd.wait');
  await page.fill('#rpc-params', '{}');
  await page.click('button:text-is("Call")');
  await page.waitForSelector('#rpc-progress li:text-is("{\\"waiting\\":true}")');
  await page.click('button:text-is("Cancel")');
  await waitFor(() => cancelled === 1, 'the machine to see the cancel');
  await page.waitForSelector('main section:nth-of-type(2) > p.status.err');
  assert.equal(await page.isDisabled('button:text-is("Cancel")'), true);
  await page.fill('#rpc-params', '[1]');
  await page.click('button:text-is("Call")');
  await page.waitForSelector('text=the params must be a JSON object');
  if (hasAdminAPI) await page.waitForSelector('main .machines td:text-is("mac-1")');
  await shot(page, 'rpc-live-1440');

  // Lockdown: on, a non-LAN client (a public X-Forwarded-For from the trusted proxy) is refused; off again.
  const fromOutside = () => fetch(srv.url + '/api/v1/info', { headers: { 'X-Forwarded-For': '203.0.113.7' } }).then((r) => r.status);
  assert.equal(await fromOutside(), 200);
  await goTo(page, 'Lockdown');
  await page.waitForSelector('#lockdown-switch[aria-checked="false"]:not([disabled])');
  await shot(page, 'lockdown-off-1440');
  await page.click('#lockdown-switch');
  await page.waitForSelector('#lockdown-switch[aria-checked="true"]');
  assert.match(await page.textContent('#lockdown-state'), /Lockdown is ON/);
  assert.equal(await fromOutside(), 503);
  assert.equal((await fetch(srv.url + '/api/v1/info')).status, 200, 'a loopback client is still served');
  await shot(page, 'lockdown-on-1440');
  await page.click('#lockdown-switch');
  await page.waitForSelector('#lockdown-switch[aria-checked="false"]');
  assert.equal(await fromOutside(), 200);

  // Connections: list, filter, inspect, disconnect (the admin API).
  await goTo(page, 'Connections');
  if (hasAdminAPI) {
    await page.fill('#cn-device', 'mac-1');
    await page.click('button:text-is("Filter")');
    await page.waitForSelector('main tbody td:text-is("mac-1")');
    assert.equal(await page.locator('main tbody tr').count(), 1);
    await page.click('button:text-is("Inspect")');
    await page.waitForSelector('main .out pre:has-text("cmd.run")');
    await shot(page, 'connections-live-1440');
    await page.click('button:text-is("Disconnect")');
    await waitFor(() => machine.closeCode === 4011, 'the machine to be closed with 4011');
    await page.waitForSelector('text=No open connection matches.');
  } else {
    await page.waitForSelector('text=This server does not offer this admin endpoint');
    await shot(page, 'connections-live-1440');
  }

  assert.deepEqual(external, [], 'requests outside the server\'s origin');
  assert.deepEqual(errors, []);
});

test('the console: key login, devices listed and one revoked', async (t) => {
  const srv = await startServer(t, CONFIG);
  const key = e2e.newSigningKey();
  const laptop = await login(srv.url, key, { name: 'laptop', kind: 'browser' });
  const code = await createPairing(srv.url, laptop.accessToken);
  const phoneTokens = await pair(srv.url, code.code, { name: 'phone', kind: 'phone' }, e2e.newSigningKey());
  const phone = new Client({ url: srv.wsUrl, token: phoneTokens.accessToken, WebSocket, reconnect: false });
  await phone.connect();
  t.after(() => phone.close());

  const { page, external, errors } = await launch(t, srv);
  await page.goto(srv.url + '/accounts');
  await page.fill('#seed', e2e.toBase64(key.seed));
  await page.fill('#device-name', 'ops console');
  await page.click('text=Sign in with key');
  await page.waitForSelector('main h1:text-is("Accounts")');
  await page.waitForSelector('main tbody td:text-is("phone")');
  const rows = await page.locator('main section:first-of-type tbody tr').allTextContents();
  assert.equal(rows.length, 3, rows.join('\n'));
  assert.ok(rows.some((r) => r.includes('ops console')) && rows.some((r) => r.includes('laptop')));
  // Not an admin: the admin-only list says so (an older server has none).
  await page.waitForSelector(hasAdminAPI ? 'text=This page needs a token with scope admin' : 'text=This server does not offer this admin endpoint');
  await shot(page, 'accounts-live-1440');
  await page.click('button[aria-label="Revoke phone"]');
  await waitFor(() => phone.closeCode === 4003, 'the revoked phone to be closed with 4003');
  await page.waitForSelector('main section:first-of-type tr:has-text("phone") td:has-text("revoked")');

  // An admin sees every account and revokes a device of another account.
  if (hasAdminAPI) {
    const admin = await launch(t, srv);
    await signInWithToken(admin.page, srv, await srv.token('ops', 'console', { scope: 'admin,read,write' }));
    await goTo(admin.page, 'Accounts');
    await admin.page.click(`main tr:has-text("${laptop.accountId}") button:text-is("Devices")`);
    await admin.page.waitForSelector(`caption:text-is("Devices of account ${laptop.accountId}")`);
    await admin.page.click('button[aria-label="Revoke laptop"]');
    await admin.page.waitForSelector('text=Revoked laptop.');
    await assert.rejects(() => me(srv.url, laptop.accessToken), /unauthorized|revoked/i);
    await shot(admin.page, 'accounts-admin-1440');
    assert.deepEqual(admin.external, []);
    assert.deepEqual(admin.errors, []);
  }

  // The key login survives a reload (its refresh token is in sessionStorage).
  await page.reload();
  await page.waitForSelector('main h1:text-is("Accounts")');
  assert.equal(await page.textContent('#conn-state'), 'connected');
  await page.click('text=Sign out');
  await page.waitForSelector('#token');

  assert.deepEqual(external, []);
  assert.deepEqual(errors, []);
});

test('the console: Apps: register an app, rotate its key, installs listed, a session appears and is stopped, output outcomes, deliveries logged', async (t) => {
  const srv = await startServer(t, CONFIG);
  // The app's backend: the SDK's App behind node:http on loopback, once the page has shown its key and secret.
  let handler;
  const backend = http.createServer((req, res) => (handler ? handler(req, res) : ((res.statusCode = 503), res.end())));
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => backend.close(r)));
  const webhookUrl = `http://127.0.0.1:${backend.address().port}/junction`;

  const { page, external, errors } = await launch(t, srv);
  await signInWithToken(page, srv, await srv.token('ops', 'console', { scope: 'admin,read,write' }));
  await goTo(page, 'Apps');
  await page.waitForSelector('text=No app registered yet.');
  await page.fill('#app-id', 'com.example.captions');
  await page.fill('#app-name', 'Live captions');
  await page.fill('#app-webhook', webhookUrl);
  await page.fill('#app-scopes', 'read,write,output');
  await page.check('#app-internal');
  await page.click('button:text-is("Register")');
  await page.waitForSelector('text=Registered com.example.captions.');
  const shown = await page.$$eval('#app-created input.secret', (xs) => xs.map((x) => x.value));
  assert.equal(shown.length, 2);
  assert.match(shown[0], /^jk_/);
  assert.match(shown[1], /^whsec_/);
  await page.waitForSelector('table:has(caption:text-is("Registered apps")) td:text-is("com.example.captions")');
  await page.waitForSelector('#app-detail:has-text("Live captions (com.example.captions)")');
  await page.waitForSelector('table:has(caption:text-is("API keys of com.example.captions")) tbody tr');
  assert.equal(await page.locator('table:has(caption:text-is("API keys of com.example.captions")) tbody tr').count(), 1);

  // Rotate: a second key, its secret shown once; the backend runs on the new key.
  await page.click('#app-rotate');
  await page.waitForSelector('text=/Key \\S+ created/');
  const rotated = await page.inputValue('#app-secrets input.secret');
  assert.match(rotated, /^jk_/);
  assert.notEqual(rotated, shown[0]);
  await waitFor(async () => (await page.locator('table:has(caption:text-is("API keys of com.example.captions")) tbody tr').count()) === 2, 'two keys listed');
  const app = new App({ appId: 'com.example.captions', apiKey: rotated, webhookSecrets: [shown[1]], url: srv.url, WebSocket, client: { logger: { warn() {}, debug() {} } } });
  t.after(() => app.close());
  handler = app.nodeHandler();

  // A device installs the app: the install appears in the app's installs (refreshed while in view).
  await page.waitForSelector('#app-sessions:has-text("No sessions yet")');
  await page.waitForSelector('#app-installs:has-text("No user has installed this app yet.")');
  const device = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'glasses-1', { kind: 'glasses', scope: 'read,write,output' }), WebSocket });
  await device.connect();
  t.after(() => device.close());
  await device.call('apps.install', { appId: 'com.example.captions', scopes: ['read', 'output'] });
  const install = '#app-installs tr:has(td:text-is("alice"))';
  await page.waitForSelector(install);
  assert.equal(await page.textContent(`${install} td:nth-child(2)`), 'read, output');
  assert.equal(await page.textContent(`${install} td:nth-child(3)`), '0');
  assert.equal(await page.textContent(`${install} td:nth-child(4)`), '', 'never started');

  // It starts the app: the session appears in the page, running, the install counts it, and the webhook is logged.
  const started = await device.call('apps.startSession', { appId: 'com.example.captions' });
  const row = `#app-sessions tr:has(td:text-is("${started.session.id}"))`;
  await page.waitForSelector(`${row} td:has-text("running")`);
  assert.equal(await page.textContent(`${row} td:nth-child(2)`), 'glasses-1');
  await page.waitForSelector(`${install} td:nth-child(3):text-is("1")`);
  assert.notEqual(await page.textContent(`${install} td:nth-child(4)`), '', 'the last session is shown');
  await page.waitForSelector('table:has(caption:has-text("Webhook deliveries")) td:text-is("202")');
  await shot(page, 'apps-session-1440');

  // Outputs: the device declares a surface, the app's session asks for two outputs (one shown, one on a surface the
  // device lacks); the session row's Outputs button shows the device's outcomes.
  const s = app.session(started.session.id);
  assert.ok(s, 'the backend holds the session');
  await s.ready();
  const shownOnDevice = [];
  device.on('output.show', (data) => shownOnDevice.push(data));
  await device.call('output.declare', { surfaces: [{ name: 'main' }] });
  assert.equal((await s.call('output.request', { id: 'cap-1', surface: 'main', content: { text: 'hello' } })).priority, 'foreground');
  await s.call('output.request', { id: 'hud-1', surface: 'hud', content: { text: 'x' } });
  await waitFor(() => shownOnDevice.some((d) => d.requestId === 'cap-1'), 'the device to show cap-1');
  await page.click(`${row} button:text-is("Outputs")`);
  assert.equal(await page.inputValue('#out-device'), 'glasses-1');
  const outRow = (id) => `#out-list tr:has(td:text-is("${id}"))`;
  await page.waitForSelector(`${outRow('cap-1')} td:nth-child(7) span:text-is("shown")`);
  await page.waitForSelector(`${outRow('hud-1')} td:nth-child(7) span:text-is("rejected")`);
  assert.equal(await page.textContent(`${outRow('hud-1')} td:nth-child(8)`), 'unknown_surface');
  assert.equal(await page.textContent(`${outRow('cap-1')} td:nth-child(2)`), 'com.example.captions');
  assert.equal(await page.textContent(`${outRow('cap-1')} td:nth-child(3)`), started.session.id);
  assert.equal(await page.textContent(`${outRow('cap-1')} td:nth-child(6)`), 'foreground');
  assert.equal(await page.textContent(`${outRow('cap-1')} td:nth-child(9)`), 'on the device');
  assert.deepEqual(await page.$$eval('#out-list tbody tr td:nth-child(4)', (tds) => tds.map((td) => td.textContent)), ['hud-1', 'cap-1'], 'newest first');
  assert.match(await page.textContent('main section[aria-labelledby="apps-outputs"] p.status'), /glasses-1 has declared surfaces here/);
  await shot(page, 'apps-outputs-1440');

  // Stop it from the console: the backend's session ends with reason admin, its shown output leaves the device (cleared).
  await page.click(`${row} button:text-is("Stop")`);
  await page.waitForSelector(`text=Session ${started.session.id} stopped.`);
  await s.done();
  assert.ok(s.err instanceof StoppedError);
  assert.equal(s.err.reason, 'admin');
  await page.waitForSelector(`${row} td:has-text("stopped")`);
  await page.waitForSelector(`${outRow('cap-1')} td:nth-child(9):has-text("(cleared)")`);
  await page.waitForSelector(`${install} td:nth-child(3):text-is("0")`);
  assert.deepEqual(external, []);
  assert.deepEqual(errors, []);
});

test('the console: keyboard navigation, 375 px and 1440 px, screenshots of every page', async (t) => {
  const srv = await startServer(t, CONFIG);
  const { page, external, errors } = await launch(t, srv);
  // A bad token is refused with the server's reason.
  await page.goto(srv.url + '/');
  await page.fill('#token', 'not-a-token');
  await page.click('text=Sign in with token');
  await page.waitForSelector('main .status.err:has-text("unauthorized: invalid credential")');
  await signInWithToken(page, srv, await srv.token('alice', 'console', { scope: 'admin,read,write' }));

  // From the top of the page: the skip link first, then the navigation.
  await page.goto(srv.url + '/');
  await page.waitForSelector('nav a[aria-current="page"]');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  const focused = [];
  for (let i = 0; i < 12 && !focused.includes('Channels'); i++) {
    await page.keyboard.press('Tab');
    focused.push(await page.evaluate(() => document.activeElement.textContent));
  }
  assert.ok(focused.includes('Channels'), `tab order: ${focused.join(' | ')}`);
  await page.keyboard.press('Enter');
  await page.waitForSelector('main h1:text-is("Channels")');
  assert.equal(new URL(page.url()).pathname, '/channels');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main', 'focus moves to the page');
  // Tab into the topic field, type, Enter submits (subscribes).
  for (let i = 0; i < 10 && (await page.evaluate(() => document.activeElement.id)) !== 'ch-topic'; i++) await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'ch-topic');
  await page.keyboard.type('room:keys');
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=Subscribed to room:keys at offset');
  // Back with the browser's history.
  await page.goBack();
  await page.waitForSelector('main h1:text-is("Overview")');
  // Focus is visible.
  await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none');

  for (const width of [375, 1440]) {
    await page.setViewportSize({ width, height: 800 });
    for (const [path, title] of PAGES) {
      await page.goto(srv.url + path);
      await page.waitForSelector(`main h1:text-is("${title}")`);
      await page.waitForLoadState('networkidle');
      const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(over <= 0, `${path} at ${width} px overflows by ${over} px`);
      // Every navigation link is reachable and at least 36 px tall (touch).
      const navHeights = await page.$$eval('nav a', (as) => as.map((a) => a.getBoundingClientRect().height));
      assert.ok(navHeights.length === PAGES.length && navHeights.every((x) => x >= 30), `nav at ${width}: ${navHeights}`);
      await shot(page, `${title.toLowerCase()}-${width}`);
    }
  }
  await page.click('text=Sign out');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'signin-375');
  assert.deepEqual(external, []);
  assert.deepEqual(errors, []);
});

test('the console is at most 150 KB of gzipped JavaScript and CSS, and served as built', async () => {
  const files = readdirSync(assetsDir).filter((f) => /\.(js|css)$/.test(f));
  assert.deepEqual(files.map((f) => f.split('.').pop()).sort(), ['css', 'js']);
  const gz = files.reduce((n, f) => n + gzipSync(readFileSync(join(assetsDir, f)), { level: 9 }).length, 0);
  console.log(`console: ${gz} bytes gzipped (budget ${BUDGET})`);
  assert.ok(gz <= BUDGET, `${gz} bytes gzipped, over the budget of ${BUDGET}`);
});
