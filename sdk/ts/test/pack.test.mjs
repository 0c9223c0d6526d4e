// `npm pack` makes a package that installs and works: a consumer project
// installs the tarball (from npm's cache that npm ci filled where it can;
// the dependencies' registry metadata, which npm ci never fetches, comes
// from the registry when the cache lacks it, as on a fresh machine),
// imports each entry point of the exports map from Node, and type-checks
// against the shipped .d.ts with tsc.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pkgDir } from './harness.mjs';

test('npm pack: the tarball installs, its exports import, its types check', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'junction-sdk-pack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  // --ignore-scripts: dist is already built (npm run build); prepack would build it again.
  const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], pkgDir))[0];
  const files = packed.files.map((f) => f.path);
  for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/crypto.js', 'dist/crypto.d.ts', 'dist/protocol.js', 'dist/apps.js', 'dist/apps.d.ts', 'dist/junction.browser.js', 'README.md']) {
    assert.ok(files.includes(f), `the tarball holds ${f}`);
  }
  assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('node_modules/')), 'no tests or node_modules in the tarball');

  const app = join(dir, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', join(dir, tgz)], app);

  writeFileSync(join(app, 'use.mjs'), `
    import { Client, JunctionError, reconnectAdvised } from '@junctionhq/junction';
    import { seal, open, newDataKey } from '@junctionhq/junction/crypto';
    import { METHOD_SCOPES } from '@junctionhq/junction/protocol';
    import { signWebhook, WebhookVerifier } from '@junctionhq/junction/apps';
    const whsec = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const hv = new WebhookVerifier({ secrets: [whsec] }).verify({ 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': signWebhook(whsec, 'msg_1', Math.floor(Date.now() / 1000), '{}') }, '{}');
    const k = newDataKey();
    const ok = new TextDecoder().decode(open(k, seal(k, new TextEncoder().encode('packed'))));
    console.log(JSON.stringify({ client: typeof Client, err: new JunctionError({ code: 'timeout', message: 'x' }).code,
      advised: reconnectAdvised(1012), scope: METHOD_SCOPES['channel.publish'], ok, hook: hv.id }));
  `);
  const out = JSON.parse(execFileSync(process.execPath, ['use.mjs'], { cwd: app, encoding: 'utf8' }));
  assert.deepEqual(out, { client: 'function', err: 'timeout', advised: true, scope: METHOD_SCOPES_PUBLISH, ok: 'packed', hook: 'msg_1' });

  writeFileSync(join(app, 'use.ts'), `
    import { Client, type Publication } from '@junctionhq/junction';
    import type { Welcome } from '@junctionhq/junction/protocol';
    import { App, type AppSession } from '@junctionhq/junction/apps';
    export const scopesOf = (s: AppSession): string[] => s.hello?.scopes ?? [];
    export type A = App;
    export async function f(c: Client): Promise<boolean> {
      const pong = await c.call('sys.ping');
      const w: Welcome | undefined = c.welcome;
      await c.subscribe<{ text: string }>('room:1', (p: Publication<{ text: string }>) => p.data.text.length);
      return pong.pong && w !== undefined;
    }
    // @ts-expect-error: sys.ping's result has no member nope
    export const g = async (c: Client) => (await c.call('sys.ping')).nope;
  `);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', lib: ['ES2022', 'DOM'], noEmit: true, types: [] }, files: ['use.ts'] }));
  execFileSync(process.execPath, [join(pkgDir, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: app, encoding: 'utf8' });
});

const METHOD_SCOPES_PUBLISH = 'authenticated'; // channel methods need a connection; the namespace rules decide (docs/channels.md)
