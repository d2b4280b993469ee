// Bundles the real-app benchmark's pages (benchmarks/latency_realapp.py) with esbuild into
// benchmarks/out/realapp/ (gitignored): TodoMVC in React and in Vue, rrweb's recorder and
// replayer for the rrweb floor, and todomvc-app-css. Run from the repository root.
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const src = 'benchmarks/realapps';
const out = 'benchmarks/out/realapp';
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: ['react-todo.jsx', 'vue-todo.js', 'rrweb-record.js', 'rrweb-replay.js'].map((f) => join(src, f)),
  outdir: out,
  bundle: true,
  minify: true, // as an app ships: production builds of React and Vue
  format: 'iife',
  target: ['es2020'],
  jsx: 'automatic',
  loader: { '.css': 'css' },
  define: {
    'process.env.NODE_ENV': '"production"',
    __VUE_OPTIONS_API__: 'true',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  logLevel: 'warning',
  legalComments: 'none',
});
copyFileSync('node_modules/todomvc-app-css/index.css', join(out, 'todomvc.css'));
