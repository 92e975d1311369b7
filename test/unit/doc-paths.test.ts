/**
 * The docs name real files (issue 17): every repository path that README.md,
 * docs/*.md, bench/README.md or harness/README.md quotes in backticks or in
 * a code block (`src/…`, `test/…`, `bench/…`, `harness/…`, `examples/…`,
 * `docs/…`, `bpf/…`) exists, and every relative Markdown link resolves.
 * Files move; a doc that still names the old path misleads whoever follows
 * it. Brace lists (`a/{b,c}.ts`) are expanded, globs (`test/*\/*.test.ts`)
 * must match something, a trailing `:line` is ignored. Skipped on purpose:
 * the "Target layout (issue 17)" section of docs/ARCHITECTURE.md, which
 * names the files the refactoring is still creating, and bench/results/,
 * whose reports are historical records.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Sections (a `## ` heading up to the next one) that may name paths that do not exist yet. */
const FUTURE_SECTIONS: Readonly<Record<string, RegExp>> = { 'docs/ARCHITECTURE.md': /^## Target layout \(issue 17\)/ };

const PATH = /(?<![\w./@~-])(?:src|test|bench|harness|examples|docs|bpf)\/[\w.*{},/-]*/g;

function docs(): string[] {
  const list = ['README.md', 'bench/README.md', 'harness/README.md'].filter((f) => existsSync(join(ROOT, f)));
  for (const f of readdirSync(join(ROOT, 'docs')).sort()) if (f.endsWith('.md')) list.push(`docs/${f}`);
  return list;
}

/** Every file and folder of the repository, relative, without dependencies and build output. */
function repoPaths(): { files: Set<string>; dirs: Set<string> } {
  const files = new Set<string>();
  const dirs = new Set<string>();
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(ROOT, rel), { withFileTypes: true })) {
      if (rel === '' && ['node_modules', 'dist', '.git'].includes(e.name)) continue;
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        dirs.add(p);
        walk(p);
      } else files.add(p);
    }
  };
  walk('');
  return { files, dirs };
}

/** `a/{b,c}/d.ts` → `a/b/d.ts`, `a/c/d.ts` (nested lists too). */
function expandBraces(p: string): string[] {
  const m = /\{([^{}]*)\}/.exec(p);
  if (!m) return [p];
  return m[1]!.split(',').flatMap((alt) => expandBraces(p.slice(0, m.index) + alt + p.slice(m.index + m[0].length)));
}

function globRegExp(glob: string): RegExp {
  const body = glob
    .split('**')
    .map((part) =>
      part
        .split('*')
        .map((s) => s.replace(/[.+?^$()[\]\\|]/g, '\\$&'))
        .join('[^/]*'),
    )
    .join('.*');
  return new RegExp(`^${body}$`);
}

/** The quoted paths of one document, with their line numbers: inline code and fenced blocks, outside future sections. */
function quotedPaths(doc: string, text: string): { line: number; path: string }[] {
  const out: { line: number; path: string }[] = [];
  let fenced = false;
  let skipping = false;
  const future = FUTURE_SECTIONS[doc];
  text.split('\n').forEach((line, i) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return;
    }
    if (!fenced && line.startsWith('## ')) skipping = future?.test(line) ?? false;
    if (skipping) return;
    const spans = fenced ? [line] : [...line.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    for (const span of spans)
      for (const m of span.matchAll(PATH))
        for (const path of expandBraces(m[0].replace(/[.,:]+$/, ''))) out.push({ line: i + 1, path: path.replace(/[.,:]+$/, '') });
  });
  return out;
}

/** Relative link targets of one document (`[text](target#anchor)`), outside code, outside future sections. */
function linkTargets(doc: string, text: string): { line: number; target: string }[] {
  const out: { line: number; target: string }[] = [];
  let fenced = false;
  let skipping = false;
  const future = FUTURE_SECTIONS[doc];
  text.split('\n').forEach((line, i) => {
    if (/^\s*```/.test(line)) fenced = !fenced;
    if (fenced) return;
    if (line.startsWith('## ')) skipping = future?.test(line) ?? false;
    if (skipping) return;
    for (const m of line.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
      const target = m[1]!;
      if (!/^[a-z][a-z+.-]*:/i.test(target)) out.push({ line: i + 1, target });
    }
  });
  return out;
}

test('paths the docs quote exist', () => {
  const { files, dirs } = repoPaths();
  const exists = (p: string): boolean => {
    const q = p.replace(/\/$/, '');
    if (!q.includes('*')) return files.has(q) || dirs.has(q);
    const re = globRegExp(q);
    for (const f of files) if (re.test(f)) return true;
    for (const d of dirs) if (re.test(d)) return true;
    return false;
  };
  const missing: string[] = [];
  let checked = 0;
  for (const doc of docs()) {
    for (const { line, path } of quotedPaths(doc, readFileSync(join(ROOT, doc), 'utf8'))) {
      checked++;
      if (!exists(path)) missing.push(`${doc}:${line}: ${path}`);
    }
  }
  assert.ok(checked > 100, `only ${checked} paths found: is the scanner still reading the docs?`);
  assert.deepEqual(missing, [], `paths named in the docs that do not exist: ${missing.join('; ')}`);
});

test('relative links in the docs resolve', () => {
  const broken: string[] = [];
  for (const doc of docs()) {
    for (const { line, target } of linkTargets(doc, readFileSync(join(ROOT, doc), 'utf8'))) {
      if (!existsSync(join(ROOT, normalize(join(dirname(doc), target))))) broken.push(`${doc}:${line}: ${target}`);
    }
  }
  assert.deepEqual(broken, [], `links that lead nowhere: ${broken.join('; ')}`);
});

test('the scanner: inline code and code blocks, brace lists, line suffixes, the future section skipped', () => {
  const text = [
    'see `src/a.ts:12` and `test/{x,y}.test.ts`, not src/prose.ts or `/tmp/src/x` or `dist/src/y`',
    '```sh',
    'node --import tsx examples/demo.ts --file bench/results/r.md',
    '```',
    '## Target layout (issue 17)',
    '`src/future.ts`',
    '## Next',
    '`harness/b/`',
  ].join('\n');
  assert.deepEqual(
    quotedPaths('docs/ARCHITECTURE.md', text).map((p) => `${p.line} ${p.path}`),
    ['1 src/a.ts', '1 test/x.test.ts', '1 test/y.test.ts', '3 examples/demo.ts', '3 bench/results/r.md', '8 harness/b/'],
  );
  // Elsewhere the section is scanned like any other.
  assert.ok(quotedPaths('README.md', text).some((p) => p.path === 'src/future.ts'));
  assert.deepEqual(expandBraces('a/{b,c}/{d,e}.ts'), ['a/b/d.ts', 'a/b/e.ts', 'a/c/d.ts', 'a/c/e.ts']);
});
