// build.mjs builds the console into ../internal/web/console, the directory
// the junction binary embeds: index.html and assets/app-<hash>.js,
// assets/app-<hash>.css (names from their content, so the server can let
// browsers cache them for good). The output depends only on the sources and
// the pinned esbuild, so a fresh build equals the committed one:
// `node scripts/build.mjs --check` fails when it does not.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = resolve(here, '../internal/web/console');
const check = process.argv.includes('--check');

if (!existsSync(resolve(here, '../sdk/ts/node_modules/@noble/curves'))) {
  console.error('console: the SDK\'s dependencies are missing: run npm ci in sdk/ts first');
  process.exit(1);
}

const common = { bundle: true, minify: true, write: false, charset: 'utf8', legalComments: 'eof', logLevel: 'warning', absWorkingDir: here };
const [js, css] = await Promise.all([
  build({ ...common, entryPoints: ['src/main.ts'], format: 'esm', platform: 'browser', target: 'es2022', outfile: 'out.js' }),
  build({ ...common, entryPoints: ['src/style.css'], target: ['chrome110', 'firefox110', 'safari16'], outfile: 'out.css' }),
]);
const one = (r, ext) => {
  const f = r.outputFiles.find((o) => o.path.endsWith(ext));
  if (!f) throw new Error(`console: esbuild wrote no ${ext}`);
  return f.contents;
};
const named = (prefix, ext, bytes) => `${prefix}-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}${ext}`;
const jsBytes = one(js, '.js');
const cssBytes = one(css, '.css');
const jsName = named('app', '.js', jsBytes);
const cssName = named('app', '.css', cssBytes);
const html = readFileSync(join(here, 'src/index.html'), 'utf8').replace('{{JS}}', jsName).replace('{{CSS}}', cssName);

/** The files of the build, by path under outDir. */
const want = new Map([
  ['index.html', Buffer.from(html)],
  [`assets/${jsName}`, Buffer.from(jsBytes)],
  [`assets/${cssName}`, Buffer.from(cssBytes)],
]);

function listFiles(dir, base = dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name), base) : [relative(base, join(dir, e.name))]));
}

const have = listFiles(outDir);
if (check) {
  const diffs = [];
  for (const [p, b] of want) if (!existsSync(join(outDir, p)) || !readFileSync(join(outDir, p)).equals(b)) diffs.push(`differs or missing: ${p}`);
  for (const p of have) if (!want.has(p)) diffs.push(`not in a fresh build: ${p}`);
  if (diffs.length) {
    console.error(`console: the committed build in internal/web/console is not what the sources build (run npm run build in console/ and commit):\n  ${diffs.join('\n  ')}`);
    process.exit(1);
  }
  console.log('console: the committed build is up to date');
} else {
  for (const p of have) if (!want.has(p)) rmSync(join(outDir, p));
  for (const [p, b] of want) {
    mkdirSync(dirname(join(outDir, p)), { recursive: true });
    writeFileSync(join(outDir, p), b);
  }
  console.log(`console: wrote ${[...want.keys()].join(', ')} (${jsBytes.length + cssBytes.length} bytes) to ${relative(process.cwd(), outDir) || '.'}`);
}
