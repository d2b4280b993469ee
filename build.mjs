// Bundles the recorder SDK and the viewer pages with esbuild into streamdom/static/.
// Recorder: recorder/global.ts -> streamdom.js (IIFE, minified; gzipped size printed).
// Viewer: every viewer/*.ts is a page entry -> <name>.js (+ <name>.css if it imports CSS);
// viewer/*.html and viewer/*.css are copied as they are. Shared viewer code lives in viewer/lib/.
import * as esbuild from 'esbuild';
import { gzipSync } from 'node:zlib';
import { readdirSync, mkdirSync, copyFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const out = 'streamdom/static';
mkdirSync(out, { recursive: true });

const common = { bundle: true, minify: true, target: ['es2020'], logLevel: 'warning', legalComments: 'none' };

await esbuild.build({
  ...common,
  entryPoints: ['recorder/global.ts'],
  outfile: join(out, 'streamdom.js'),
  format: 'iife',
});

const pages = readdirSync('viewer').filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
if (pages.length) {
  await esbuild.build({
    ...common,
    entryPoints: pages.map((f) => join('viewer', f)),
    outdir: out,
    format: 'iife',
    loader: { '.css': 'css' },
  });
}
for (const f of readdirSync('viewer')) {
  if (f.endsWith('.html') || f.endsWith('.css') || f.endsWith('.svg')) copyFileSync(join('viewer', f), join(out, f));
}

const rec = readFileSync(join(out, 'streamdom.js'));
const gz = gzipSync(rec, { level: 9 }).length;
console.log(`recorder bundle: ${(rec.length / 1024).toFixed(1)} KB raw, ${(gz / 1024).toFixed(1)} KB gzipped (streamdom/static/streamdom.js)`);
if (existsSync(join(out, 'player.js'))) {
  const p = readFileSync(join(out, 'player.js'));
  console.log(`viewer player bundle: ${(p.length / 1024).toFixed(1)} KB raw, ${(gzipSync(p).length / 1024).toFixed(1)} KB gzipped`);
}
