/**
 * Config files (YAML, or JSON which is YAML too): text in, validated
 * ConfigSpec out. Pure; the CLI reads the file (bounded, regular files
 * only: src/fs/regular-file.ts).
 *
 * A config file is untrusted input like any other: a YAML alias bomb, a
 * document nested thousands of levels deep or one with thousands of
 * aliases must give a clear error, not a stack overflow, an exception
 * from the YAML library or minutes of CPU. parseYamlDocument bounds all
 * three; the TPO gateway's config goes through it too.
 */
import { LineCounter, parseDocument, isAlias, isMap, isPair, isScalar, isSeq, type Node as YamlNode } from 'yaml';
import { PolicyValidationError, type PolicyIssue } from '../errors.js';
import type { FlowPolicy, TierChoice } from './schema.js';
import { parseConfigWithTcp } from './tcp-config.js';
import type { TcpRedirectPolicy } from './tcp-redirect.js';
import type { HostAddresses } from './flow-set.js';

/** Largest Sluice config file, bytes (65,536 subscribers take about 2 MiB). */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
/** Deepest nesting of mappings and sequences a config may have (Sluice's own need 5). */
export const MAX_NESTING = 32;
/**
 * Most alias nodes (`*name`) a document may hold. The YAML library's
 * alias resolution costs time in proportion to the document for each
 * alias, so a document of many aliases would take minutes; and expanding
 * aliases is bounded separately (maxAliasCount) against alias bombs.
 */
export const MAX_ALIASES = 100;
/** The YAML library's bound on alias expansion (its default, written down). */
const MAX_ALIAS_EXPANSION = 100;

/**
 * A validated config: the tier, and each flow as written (validated, not
 * normalized), ready to hand to `Sluice.apply` — which validates again, so
 * the library stays the one boundary.
 */
export interface LoadedConfig {
  readonly tier: TierChoice;
  readonly flows: readonly FlowPolicy[];
  /** The file's tcp-redirect entries (`type: tcp-redirect` in flows:), as written, validated: for `Sluice.apply` too. */
  readonly tcp: readonly TcpRedirectPolicy[];
}

/** A problem found while reading a YAML document: the line when known. */
export interface YamlProblem {
  readonly line?: number;
  readonly message: string;
}

export type YamlParse = { ok: true; value: unknown } | { ok: false; problems: YamlProblem[] };

const tooDeep = `nested deeper than ${MAX_NESTING} levels`;

function isStackOverflow(err: unknown): boolean {
  return err instanceof RangeError && /call stack/i.test(err.message);
}

/**
 * Parses YAML (or JSON) text into a plain value, refusing documents that
 * are malformed, have duplicate keys, nest deeper than MAX_NESTING, hold
 * more than MAX_ALIASES aliases, or expand aliases beyond the library's
 * bound. Never throws for any input text.
 */
export function parseYamlDocument(text: string): YamlParse {
  const lines = new LineCounter();
  let doc: ReturnType<typeof parseDocument>;
  try {
    // Duplicate keys are checked below: the library's own check compares
    // each key with every other (20,000 keys in one mapping take 11 s).
    doc = parseDocument(text, { uniqueKeys: false, prettyErrors: true, lineCounter: lines });
  } catch (err) {
    if (isStackOverflow(err)) return { ok: false, problems: [{ message: tooDeep }] };
    return { ok: false, problems: [{ message: `cannot parse: ${(err as Error).message}` }] };
  }
  if (doc.errors.length) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({
        ...(e.linePos?.[0]?.line !== undefined ? { line: e.linePos[0].line } : {}),
        // The parser reports its own stack overflow as an error at the node.
        message: /call stack/i.test(e.message) ? tooDeep : e.message.split('\n')[0]!,
      })),
    };
  }
  // Walk the syntax tree without recursion: depth, aliases and duplicate
  // keys, before anything recursive (toJS, the schema) sees the document.
  let aliases = 0;
  const stack: { node: unknown; depth: number }[] = [{ node: doc.contents, depth: 0 }];
  while (stack.length) {
    const { node, depth } = stack.pop()!;
    if (isAlias(node)) {
      if (++aliases > MAX_ALIASES) return { ok: false, problems: [{ ...lineOf(node, lines), message: `more than ${MAX_ALIASES} aliases` }] };
    } else if (isMap(node) || isSeq(node)) {
      if (depth + 1 > MAX_NESTING) return { ok: false, problems: [{ ...lineOf(node, lines), message: tooDeep }] };
      const keys = isMap(node) ? new Set<string>() : undefined;
      for (const item of node.items as unknown[]) {
        if (keys && isPair(item)) {
          const key = item.key;
          if (!isScalar(key))
            return { ok: false, problems: [{ ...lineOf(key as YamlNode, lines), message: 'a key must be a plain value, not a list, mapping or alias' }] };
          // As the key will read in the result: 1 and "1" are one key there.
          const name = String(key.value);
          if (keys.has(name)) return { ok: false, problems: [{ ...lineOf(key, lines), message: `Map keys must be unique ('${name}' appears twice)` }] };
          keys.add(name);
        }
        stack.push({ node: item, depth: depth + 1 });
      }
    } else if (isPair(node)) {
      stack.push({ node: node.key, depth }, { node: node.value, depth });
    }
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSION });
  } catch (err) {
    if (isStackOverflow(err)) return { ok: false, problems: [{ message: tooDeep }] };
    if (err instanceof ReferenceError && /alias/i.test(err.message)) {
      return { ok: false, problems: [{ message: `aliases expand too far (more than ${MAX_ALIAS_EXPANSION} copies; an alias bomb?)` }] };
    }
    return { ok: false, problems: [{ message: `cannot parse: ${(err as Error).message}` }] };
  }
  // Aliases may stack nesting (an anchored deep list inside another): check the result too.
  const deep = nestingProblem(value);
  if (deep) return { ok: false, problems: [{ message: deep }] };
  return { ok: true, value };
}

function lineOf(node: YamlNode, lines: LineCounter): { line?: number } {
  const offset = node.range?.[0];
  return offset === undefined ? {} : { line: lines.linePos(offset).line };
}

/**
 * Checks a parsed value (YAML after alias expansion, or JSON) for nesting
 * deeper than `max`, without recursion; also bounds the number of nodes
 * visited, so a value that shares subtrees many times is refused rather
 * than walked for minutes. Returns the problem, or undefined.
 */
export function nestingProblem(value: unknown, max = MAX_NESTING, maxNodes = 50_000_000): string | undefined {
  const stack: [unknown, number][] = [[value, 0]];
  let visited = 0;
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth + 1 > max) return `nested deeper than ${max} levels`;
    if (++visited > maxNodes) return `more than ${maxNodes} nested values`;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return undefined;
}

/**
 * The plain value of YAML (or JSON) text, or a PolicyValidationError whose
 * issues carry `source` and the line (`source:12: ...`) of each problem
 * parseYamlDocument found.
 */
export function parseYamlOrThrow(text: string, source: string): unknown {
  const parsed = parseYamlDocument(text);
  if (!parsed.ok) {
    throw new PolicyValidationError(
      parsed.problems.map((p) => ({ path: '', message: `${source}${p.line !== undefined ? `:${p.line}` : ''}: ${p.message}` })),
      `cannot parse ${source}`,
    );
  }
  return parsed.value;
}

/**
 * Parses and validates a config document. YAML syntax errors, duplicate
 * keys, excessive nesting and aliases are reported with their line,
 * schema errors with their field path, the checks across flows (names,
 * listen overlaps, subscribers, relay loops through `host`'s addresses:
 * flow-set.ts) with the flows they concern. Every message starts with
 * `source`.
 */
export function parseConfigText(text: string, source = 'config', host?: HostAddresses): LoadedConfig {
  const value = parseYamlOrThrow(text, source);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PolicyValidationError([{ path: '', message: 'expected a mapping with a flows: list' }], `invalid config ${source}`);
  }
  try {
    const { spec, udp, tcp } = parseConfigWithTcp(value as Record<string, unknown>, host);
    return { tier: spec.tier, flows: udp as FlowPolicy[], tcp };
  } catch (err) {
    if (err instanceof PolicyValidationError) throw new PolicyValidationError(err.issues as PolicyIssue[], `invalid config ${source}`);
    throw err;
  }
}
