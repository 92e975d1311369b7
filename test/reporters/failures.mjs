// @ts-check
/**
 * node:test reporter that prints, after everything else, one line per
 * failed test (file:line, suite path › name, first line of the error) and
 * a closing "N passed, N failed, N skipped" line: in a run of ~2,000 lines
 * the failures are then the last thing on screen. Used beside the spec
 * reporter (package.json "test"); the exit code stays node's own.
 *
 * Plain JavaScript (type-checked through tsconfig's checkJs): node loads
 * reporters before `--import tsx` can teach it TypeScript.
 *
 * What counts as a failure to list:
 * - a test whose own code, hook or timeout failed, at any depth;
 * - a test file that failed outside any test (crashed at import, an
 *   uncaught error after its tests, a non-zero exit): node reports it as a
 *   test named after the file; its last stderr lines are shown, since the
 *   event itself only says "test failed".
 * A suite or parent test that failed only because a subtest did
 * ('subtestsFailed') is not listed again: its failing leaves are.
 */
import { relative } from 'node:path';

/** Stderr lines kept per file, shown for a file-level failure. */
const STDERR_TAIL = 12;
const MESSAGE_MAX = 300;

/**
 * @typedef {{ name?: string, nesting?: number, file?: string, line?: number, skip?: unknown, todo?: unknown,
 *   message?: string, details?: { type?: string, error?: unknown } }} EventData
 * @typedef {{ failureType?: string, cause?: unknown, message?: string, exitCode?: number | null, signal?: string | null }} TestFailure
 * @typedef {{ where: string, path: string, why: string, detail: string[] }} Failure
 */

/**
 * First non-empty line of the test's own error (node wraps it in `cause`).
 * @param {unknown} err
 * @returns {string}
 */
export function firstLine(err) {
  const e = /** @type {TestFailure | undefined} */ (err);
  const inner = /** @type {{ message?: unknown, name?: unknown } | string | undefined} */ (e?.cause ?? e);
  let text;
  if (typeof inner === 'string') text = inner;
  else if (inner && typeof inner.message === 'string')
    text = `${typeof inner.name === 'string' && inner.name !== 'Error' ? `${inner.name}: ` : ''}${inner.message}`;
  else text = String(inner ?? 'failed');
  const line = text.split('\n').find((l) => l.trim() !== '') ?? text;
  return line.length > MESSAGE_MAX ? `${line.slice(0, MESSAGE_MAX)}…` : line;
}

/**
 * @param {AsyncIterable<{ type: string, data: unknown }>} source
 * @returns {AsyncGenerator<string, void>}
 */
export default async function* failures(source) {
  const cwd = process.cwd();
  /** @param {string} file */
  const rel = (file) => (file ? relative(cwd, file) || file : '?');
  /** Per file: names of the tests now running, by nesting level (from test:start). @type {Map<string, string[]>} */
  const stacks = new Map();
  /** @type {Map<string, string[]>} */
  const stderrTail = new Map();
  /**
   * Diagnostics that name no file (e.g. "a resource generated asynchronous
   * activity after the test ended" with its error), since the last file
   * ended: they explain the next file-level failure.
   * @type {string[]}
   */
  let looseDiagnostics = [];
  /** @type {Failure[]} */
  const failed = [];
  let passed = 0;
  let skipped = 0;

  for await (const event of source) {
    const data = /** @type {EventData} */ (event.data ?? {});
    const file = data.file ?? '';
    switch (event.type) {
      case 'test:start': {
        const stack = stacks.get(file) ?? [];
        stack.length = Math.min(stack.length, data.nesting ?? 0);
        stack.push(data.name ?? '?');
        stacks.set(file, stack);
        break;
      }
      case 'test:stderr': {
        const tail = stderrTail.get(file) ?? [];
        tail.push(
          ...String(data.message ?? '')
            .split('\n')
            .filter((l) => l.trim() !== ''),
        );
        stderrTail.set(file, tail.slice(-STDERR_TAIL));
        break;
      }
      case 'test:diagnostic': {
        const text = String(data.message ?? '');
        if (!data.file && !/^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) [\d.]+$/.test(text)) {
          looseDiagnostics = [...looseDiagnostics, ...text.split('\n').filter((l) => l.trim() !== '')].slice(-STDERR_TAIL);
        }
        break;
      }
      case 'test:dequeue': {
        // A file starts (files run one at a time): earlier loose diagnostics were not its own.
        if ((data.nesting ?? 0) === 0 && data.name === data.file) looseDiagnostics = [];
        break;
      }
      case 'test:pass': {
        if (data.details?.type === 'suite') break;
        // A todo test is not a pass either: counted with the skipped.
        if ((data.skip !== undefined && data.skip !== false) || (data.todo !== undefined && data.todo !== false)) skipped++;
        else passed++;
        break;
      }
      case 'test:fail': {
        const err = /** @type {TestFailure | undefined} */ (data.details?.error);
        if (err?.failureType === 'subtestsFailed') break;
        const nesting = data.nesting ?? 0;
        if (nesting === 0 && data.name === data.file) {
          const how = err?.signal ? `killed by ${err.signal}` : typeof err?.exitCode === 'number' ? `exit code ${err.exitCode}` : firstLine(err);
          failed.push({
            where: rel(file),
            path: '(the file itself, outside any test)',
            why: how,
            detail: [...looseDiagnostics, ...(stderrTail.get(file) ?? [])],
          });
          looseDiagnostics = [];
        } else {
          const parents = (stacks.get(file) ?? []).slice(0, nesting);
          const cancelled = err?.failureType === 'cancelledByParent' ? ' (cancelled: its parent ended first)' : '';
          failed.push({
            where: `${rel(file)}${data.line ? `:${data.line}` : ''}`,
            path: [...parents, data.name ?? '?'].join(' › '),
            why: `${firstLine(err)}${cancelled}`,
            detail: [],
          });
        }
        break;
      }
      default:
        break;
    }
  }

  const lines = ['', `── failed tests (${failed.length}) ──`];
  if (failed.length === 0) lines.push('none');
  for (const f of failed) {
    lines.push(`✖ ${f.where}  ${f.path}`, `    ${f.why}`);
    for (const d of f.detail) lines.push(`    | ${d}`);
  }
  // The plain closing line CI reads: "N passed, N failed", skipped after.
  lines.push('', `summary: ${passed} passed, ${failed.length} failed, ${skipped} skipped`, '');
  yield lines.join('\n');
}
