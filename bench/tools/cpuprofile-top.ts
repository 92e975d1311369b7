/**
 * The top functions of V8 CPU profiles (`node --cpu-prof`, as
 * bench/tools/tpo-loopback.ts --cpu-prof writes them): self time per
 * function as a share of the profile's non-idle samples, and the idle
 * share. Used for issue 18's "where the time goes" tables.
 *
 *   node --import tsx bench/tools/cpuprofile-top.ts FILE.cpuprofile [...] [--top 25] [--inclusive NAME,NAME]
 *
 * --inclusive: also the share of samples whose stack contains a frame of
 * that function name (the time under it, its callees included).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface Frame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: Frame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const files = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--'));
const topIndex = process.argv.indexOf('--top');
const TOP = topIndex > 0 ? Number(process.argv[topIndex + 1]) : 25;
const incIndex = process.argv.indexOf('--inclusive');
const INCLUSIVE = incIndex > 0 ? (process.argv[incIndex + 1] ?? '').split(',').filter(Boolean) : [];

function label(f: Frame): string {
  const where = f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
}

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>(INCLUSIVE.map((n) => [n, 0]));
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    const node = byId.get(p.samples[i]!)!;
    const name = node.callFrame.functionName;
    if (name === '(idle)') {
      idle += dt;
      continue;
    }
    total += dt;
    const l = label(node.callFrame);
    self.set(l, (self.get(l) ?? 0) + dt);
    if (INCLUSIVE.length) {
      const seen = new Set<string>();
      for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
        const fn = byId.get(id)!.callFrame.functionName;
        if (inclusive.has(fn) && !seen.has(fn)) {
          seen.add(fn);
          inclusive.set(fn, inclusive.get(fn)! + dt);
        }
      }
    }
  }
  const pct = (x: number) => ((100 * x) / total).toFixed(1).padStart(5);
  process.stdout.write(
    `${basename(file)}: ${(total / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle (${((100 * idle) / (idle + total)).toFixed(0)} %)\n`,
  );
  for (const [l, t] of [...self].sort((x, y) => y[1] - x[1]).slice(0, TOP)) process.stdout.write(`  ${pct(t)} %  ${l}\n`);
  for (const [n, t] of inclusive) process.stdout.write(`  incl ${pct(t)} %  ${n}\n`);
}
