/**
 * The package's "exports" (issue 17, item 7): every entry names files the
 * build emits from src/ (tsconfig.build.json: src/X.ts -> dist/X.js and
 * dist/X.d.ts), so `import { TpoGateway } from 'sluice/tpo'` resolves in an
 * installed package.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; default: string }> };

test("package.json exports '.' and './tpo', each a dist file built from a src entry", () => {
  assert.deepEqual(Object.keys(pkg.exports), ['.', './tpo']);
  for (const [name, entry] of Object.entries(pkg.exports)) {
    const js = /^\.\/dist\/(.+)\.js$/.exec(entry.default);
    assert.ok(js, `${name}: default is a .js file under dist/`);
    assert.equal(entry.types, `./dist/${js[1]}.d.ts`, `${name}: types sit next to it`);
    assert.ok(existsSync(join(ROOT, 'src', `${js[1]}.ts`)), `${name}: src/${js[1]}.ts exists`);
  }
  assert.equal(pkg.exports['./tpo']!.default, './dist/tpo/index.js');
});
