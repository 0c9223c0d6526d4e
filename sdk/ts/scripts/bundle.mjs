// bundle.mjs builds dist/junction.browser.js: the SDK and its dependencies
// as one ES module for browsers (esbuild), beside tsc's per-file output.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/index.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  outfile: 'dist/junction.browser.js',
  logLevel: 'warning',
});
