/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4),
 * for tests: it throws on anything the format does not allow (a sample
 * before its family's TYPE, a family split in two groups, a TYPE or HELP
 * twice, a bad name, an escape other than \\, \" and \n in a label value,
 * a duplicate series, a value Go's ParseFloat would refuse) and returns
 * the families with their label values unescaped.
 */

export interface ParsedSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface ParsedFamily {
  readonly name: string;
  help?: string;
  type?: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  readonly samples: ParsedSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Record<string, readonly string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['_sum', '_count'] };

function fail(lineNo: number, line: string, why: string): never {
  throw new Error(`exposition line ${lineNo}: ${why}: ${JSON.stringify(line.slice(0, 200))}`);
}

function parseValue(s: string, lineNo: number, line: string): number {
  if (s === 'NaN') return NaN;
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) fail(lineNo, line, `bad value ${s}`);
  return Number(s);
}

function unescapeHelp(s: string, lineNo: number, line: string): string {
  return s.replace(/\\(.?)/g, (_, c: string) => (c === '\\' ? '\\' : c === 'n' ? '\n' : fail(lineNo, line, `bad escape \\${c} in HELP`)));
}

/** Reads `{a="x",b="y"}` from `line` at `i` (just after the `{`); returns the labels and the index after `}`. */
function parseLabels(line: string, start: number, lineNo: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start;
  while (line[i] !== '}') {
    const eq = line.indexOf('=', i);
    if (eq < 0) fail(lineNo, line, 'label without =');
    const name = line.slice(i, eq);
    if (!LABEL_NAME.test(name)) fail(lineNo, line, `bad label name ${JSON.stringify(name)}`);
    if (name in labels) fail(lineNo, line, `label ${name} twice`);
    if (line[eq + 1] !== '"') fail(lineNo, line, 'label value not quoted');
    let v = '';
    let j = eq + 2;
    for (;;) {
      const c = line[j];
      if (c === undefined) fail(lineNo, line, 'unterminated label value');
      if (c === '"') break;
      if (c === '\\') {
        const e = line[j + 1];
        if (e === '\\') v += '\\';
        else if (e === '"') v += '"';
        else if (e === 'n') v += '\n';
        else fail(lineNo, line, `bad escape \\${e ?? ''} in a label value`);
        j += 2;
      } else {
        v += c;
        j++;
      }
    }
    labels[name] = v;
    i = j + 1;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') fail(lineNo, line, 'expected , or } after a label');
  }
  return { labels, end: i + 1 };
}

export function parseExposition(text: string): Map<string, ParsedFamily> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, ParsedFamily>();
  const closed = new Set<string>();
  let current: ParsedFamily | undefined;
  const seen = new Set<string>();
  const family = (name: string, lineNo: number, line: string): ParsedFamily => {
    if (current?.name === name) return current;
    if (closed.has(name) || families.has(name)) fail(lineNo, line, `family ${name} is not one group`);
    if (current) closed.add(current.name);
    current = { name, samples: [] };
    families.set(name, current);
    return current;
  };
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, idx) => {
    const lineNo = idx + 1;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) fail(lineNo, line, 'a comment that is neither HELP nor TYPE');
      const [, kind, name, rest] = m as unknown as [string, 'HELP' | 'TYPE', string, string];
      if (!METRIC_NAME.test(name)) fail(lineNo, line, 'bad metric name');
      const f = family(name, lineNo, line);
      if (kind === 'HELP') {
        if (f.help !== undefined) fail(lineNo, line, 'HELP twice');
        f.help = unescapeHelp(rest, lineNo, line);
      } else {
        if (f.type !== undefined) fail(lineNo, line, 'TYPE twice');
        if (f.samples.length) fail(lineNo, line, 'TYPE after samples');
        if (!TYPES.has(rest)) fail(lineNo, line, `unknown type ${rest}`);
        f.type = rest as ParsedFamily['type'];
      }
      return;
    }
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) fail(lineNo, line, 'no metric name');
    const name = line.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) fail(lineNo, line, 'bad metric name');
    let labels: Record<string, string> = {};
    let rest = nameEnd;
    if (line[nameEnd] === '{') ({ labels, end: rest } = parseLabels(line, nameEnd + 1, lineNo));
    if (line[rest] !== ' ') fail(lineNo, line, 'no space before the value');
    const parts = line.slice(rest + 1).split(' ');
    if (parts.length > 2 || (parts.length === 2 && !/^-?\d+$/.test(parts[1]!))) fail(lineNo, line, 'trailing text after the value');
    const value = parseValue(parts[0]!, lineNo, line);
    // The family: the current one if the name is it or one of its type's suffixed names.
    const base = current && (current.name === name || (SUFFIXES[current.type ?? '']?.some((s) => name === current!.name + s) ?? false)) ? current.name : name;
    const f = family(base, lineNo, line);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
    if (seen.has(key)) fail(lineNo, line, 'duplicate series');
    seen.add(key);
    f.samples.push({ name, labels, value });
  });
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; undefined if none, an error if several. */
export function sampleValue(families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches = [...families.values()]
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matches[0]?.value;
}
