#!/usr/bin/env node
// The `klein` command: runs the compiled CLI (npm run build makes dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(compiled)) {
  console.error('klein: not built yet; run `npm run build` (or `npm start`, which builds) first');
  process.exit(1);
}
await import(compiled);
