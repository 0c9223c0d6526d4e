// The test harness: a real junction binary (built with go build, or
// $JUNCTION_TEST_BIN), started on a free loopback port with a temporary data
// directory and a configuration file, and tokens minted by `junction token`.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
export const pkgDir = resolve(here, '..');
export const repoDir = resolve(pkgDir, '..', '..');
const run = promisify(execFile);

let binary;
/** junctionBinary returns the path of the junction binary, building it once per test process when $JUNCTION_TEST_BIN is not set. */
export function junctionBinary() {
  if (binary) return binary;
  if (process.env.JUNCTION_TEST_BIN) return (binary = process.env.JUNCTION_TEST_BIN);
  const dir = mkdtempSync(join(tmpdir(), 'junction-sdk-bin-'));
  const out = join(dir, 'junction');
  execFileSync('go', ['build', '-o', out, './cmd/junction'], { cwd: repoDir, stdio: ['ignore', 'inherit', 'inherit'] });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return (binary = out);
}

/** The namespaces the tests use: room:{name} keeps history (resume) and presence. */
export const ROOMS = `
hub:
  namespaces:
    - pattern: "room:{name}"
      subscribe: ["any"]
      publish: ["scope=write"]
      presence: true
      history_size: 1000
      history_ttl: 10m
    - pattern: "last:{name}"
      subscribe: ["any"]
      publish: ["scope=write"]
      history_size: 10
      snapshot: retained
`;

/**
 * startServer starts `junction serve` on 127.0.0.1:0 with config (YAML
 * text) and returns its URLs, a token minter and stop(). t.after stops it.
 */
export async function startServer(t, config = ROOMS) {
  const bin = junctionBinary();
  const data = mkdtempSync(join(tmpdir(), 'junction-sdk-data-'));
  const cfgFile = join(data, 'junction.yaml');
  writeFileSync(cfgFile, config);
  let proc;
  let exited;
  let stderr = '';
  const spawnServer = async (addr) => {
    proc = spawn(bin, ['serve', '--addr', addr, '--data', data, '--config', cfgFile, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stderr.on('data', (b) => {
      stderr += b;
    });
    exited = new Promise((r) => proc.once('exit', r));
    const p = proc;
    return new Promise((resolve, reject) => {
      let out = '';
      const onData = (b) => {
        out += b;
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          p.stdout.off('data', onData);
          resolve(m[1]);
        }
      };
      p.stdout.on('data', onData);
      p.once('exit', (code) => reject(new Error(`junction serve exited ${code} before listening: ${stderr}`)));
    });
  };
  const url = await spawnServer('127.0.0.1:0');
  const server = {
    url,
    wsUrl: url.replace(/^http/, 'ws') + '/ws',
    data,
    stderr: () => stderr,
    /** token mints an access token with `junction token`. */
    async token(user, device, { kind = 'browser', scope = 'read,write', ttl = '1h' } = {}) {
      const { stdout } = await run(bin, ['token', '--data', data, '--user', user, '--device', device, '--kind', kind, '--scope', scope, '--ttl', ttl]);
      return stdout.trim();
    },
    /** stop sends SIGTERM (the server drains: server.shutdown, then 1012) and waits for the exit. */
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
    /** start starts the server again on the same address and data directory. */
    async start() {
      await spawnServer(new URL(url).host);
    },
  };
  t.after(async () => {
    await server.stop();
    rmSync(data, { recursive: true, force: true });
  });
  return server;
}

/**
 * startProxy forwards TCP connections from a loopback port to target
 * ("127.0.0.1:port"); cut() resets every connection it carries, as a
 * network failure would (no close frame); stall() stops forwarding on them
 * without closing anything (a silent peer); refuse(true) resets new
 * connections at once until refuse(false).
 */
export async function startProxy(t, targetUrl) {
  const target = new URL(targetUrl);
  const socks = new Set();
  const pairs = new Set();
  let refusing = false;
  const srv = net.createServer((c) => {
    if (refusing) {
      c.resetAndDestroy();
      return;
    }
    const up = net.connect(Number(target.port), target.hostname);
    pairs.add([c, up]);
    socks.add(c);
    socks.add(up);
    c.pipe(up);
    up.pipe(c);
    const end = () => {
      c.destroy();
      up.destroy();
      socks.delete(c);
      socks.delete(up);
    };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  t.after(() => new Promise((r) => (srv.close(r), [...socks].forEach((s) => s.destroy()))));
  return {
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    count: () => socks.size / 2,
    refuse(on) {
      refusing = on;
    },
    stall() {
      for (const [c, up] of pairs) {
        c.unpipe(up);
        up.unpipe(c);
        c.pause();
        up.pause();
      }
      pairs.clear();
    },
    cut() {
      pairs.clear();
      for (const s of socks) s.resetAndDestroy ? s.resetAndDestroy() : s.destroy();
      socks.clear();
    },
  };
}

/** waitFor resolves when cond() holds, polling; it fails after ms with what. */
export async function waitFor(cond, what, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** outputDir is where tests leave artifacts (screenshots, logs). */
export function outputDir() {
  const d = join(pkgDir, 'test-output');
  if (!existsSync(d)) mkdirSync(d, { recursive: true });
  return d;
}

const goPrograms = new Map();
/** goProgram builds the Go program test/testdata/NAME (which uses the Go SDK) once per test process and returns its path. */
export function goProgram(name) {
  if (goPrograms.has(name)) return goPrograms.get(name);
  const dir = mkdtempSync(join(tmpdir(), `junction-sdk-${name}-`));
  const out = join(dir, name);
  execFileSync('go', ['build', '-o', out, `./sdk/ts/test/testdata/${name}`], { cwd: repoDir, stdio: ['ignore', 'inherit', 'inherit'] });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  goPrograms.set(name, out);
  return out;
}
