#!/usr/bin/env node
// Entry point installed as `sluice`. Runs the compiled CLI (npm install builds dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('sluice: dist/ is missing; run `npm install` (or `npm run build`) in the sluice checkout first\n');
  process.exit(1);
}
const { main, exitAfterOutput } = await import(entry.href);
// Not process.exit: output still queued for a pipe would be lost.
await exitAfterOutput(await main(process.argv));
