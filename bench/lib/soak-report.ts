/**
 * The soak's verdict and report: <out>/soak-<stamp>.json (every RSS
 * sample, every counter) and <out>/soak-<stamp>.md (tables).
 *
 * Pass when: no process crashed (an exit we did not ask for), every one
 * stopped on SIGTERM within the grace period with exit code 0; each
 * process's RSS at the end is within 10 % of its RSS after the warm-up;
 * the real traffic was byte-exact (no corrupt datagram or transfer, no
 * missing datagram that no counter explains, no failed transfer); no
 * stranger got an answer; the TPO session was never replaced.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RssSample, ExitRecord } from './soak-procs.js';
import type { RelayResult } from './soak-relay.js';
import type { TpoResult } from './soak-tpo.js';

export const MEMORY_TOLERANCE = 0.1;

export interface ProcessRecord {
  name: string;
  pid: number;
  rss: RssSample[];
  exit?: ExitRecord;
  stderrTail: string[];
}

export interface MemorySummary {
  name: string;
  /** Median of the samples just after the warm-up, kB. */
  warmKb: number;
  /** Median of the last three samples, kB. */
  endKb: number;
  maxKb: number;
  growthPct: number;
  flat: boolean;
}

export interface SoakReport {
  startedAt: string;
  finishedAt: string;
  plannedMinutes: number;
  ranSeconds: number;
  warmupSeconds: number;
  seed: number;
  machine: Record<string, unknown>;
  interrupted: boolean;
  skipped: { what: string; why: string }[];
  processes: ProcessRecord[];
  memory: MemorySummary[];
  relays: RelayResult[];
  tpo?: TpoResult;
  verdict: { pass: boolean; failures: string[] };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : 0;
}

export function memorySummary(p: ProcessRecord, warmupSeconds: number): MemorySummary | undefined {
  const after = p.rss.filter((s) => s.t >= warmupSeconds);
  if (after.length < 2) return undefined;
  const warmKb = median(after.slice(0, 3).map((s) => s.kb));
  const endKb = median(p.rss.slice(-3).map((s) => s.kb));
  const maxKb = Math.max(...p.rss.map((s) => s.kb));
  const growthPct = warmKb ? ((endKb - warmKb) / warmKb) * 100 : 0;
  return { name: p.name, warmKb, endKb, maxKb, growthPct: Math.round(growthPct * 10) / 10, flat: endKb <= warmKb * (1 + MEMORY_TOLERANCE) };
}

export function verdict(r: Omit<SoakReport, 'verdict'>): { pass: boolean; failures: string[] } {
  const f: string[] = [];
  if (r.interrupted) f.push(`interrupted after ${(r.ranSeconds / 60).toFixed(1)} of ${r.plannedMinutes} minutes: not a complete soak`);
  for (const p of r.processes) {
    if (!p.exit) f.push(`${p.name}: never exited (still running at the end?)`);
    else if (!p.exit.expected)
      f.push(`${p.name}: crashed at ${p.exit.at.toFixed(0)} s (exit ${p.exit.code ?? p.exit.signal}): ${p.stderrTail.slice(-5).join(' | ')}`);
    else if (p.exit.killed) f.push(`${p.name}: did not stop within the grace period after SIGTERM (killed)`);
    else if (p.exit.code !== 0) f.push(`${p.name}: exit code ${p.exit.code ?? p.exit.signal} on SIGTERM: ${p.stderrTail.slice(-3).join(' | ')}`);
  }
  for (const m of r.memory)
    if (!m.flat) f.push(`${m.name}: RSS grew ${m.growthPct} % after the warm-up (${m.warmKb} → ${m.endKb} kB; limit ${MEMORY_TOLERANCE * 100} %)`);
  for (const p of r.processes) if (!r.memory.some((m) => m.name === p.name)) f.push(`${p.name}: too few RSS samples after the warm-up to judge memory`);
  for (const x of r.relays) {
    for (const s of x.real.subscribers)
      if (s.corrupt) f.push(`${x.name}: ${s.corrupt} corrupt datagram(s) at subscriber ${s.port}: ${s.corruptSamples.join('; ')}`);
    if (x.unexplained) f.push(`${x.name}: ${x.unexplained} real datagram(s) missing that no counter explains`);
    if (x.reflected) f.push(`${x.name}: ${x.reflected} datagram(s) sent back to a sender`);
    if (x.real.sent === 0) f.push(`${x.name}: no real traffic was sent`);
  }
  const t = r.tpo;
  if (t) {
    if (t.tcp.corrupt) f.push(`tpo: ${t.tcp.corrupt} TCP transfer(s) came back changed: ${t.tcp.failures.join('; ')}`);
    if (t.tcp.failed) f.push(`tpo: ${t.tcp.failed} TCP transfer(s) failed: ${t.tcp.failures.join('; ')}`);
    if (t.tcp.transfers === 0) f.push('tpo: no TCP transfer completed');
    if (t.udp.corrupt) f.push(`tpo: ${t.udp.corrupt} corrupt UDP datagram(s)`);
    if (t.unexplained) f.push(`tpo: ${t.unexplained} real datagram(s)/transfer(s) lost or changed that no counter explains`);
    if (t.answered) f.push(`tpo: ${t.answered} datagram(s) answered to a fuzzing stranger`);
    if (t.newSessions.a || t.newSessions.b) f.push(`tpo: the session was replaced during the soak (A +${t.newSessions.a}, B +${t.newSessions.b})`);
  }
  return { pass: f.length === 0, failures: f };
}

const mb = (kb: number) => (kb / 1024).toFixed(1);

export function markdown(r: SoakReport): string {
  const out: string[] = [];
  out.push(`# Soak ${r.startedAt}: ${r.verdict.pass ? 'PASS' : 'FAIL'}`, '');
  out.push(
    `${(r.ranSeconds / 60).toFixed(1)} of ${r.plannedMinutes} planned minutes${r.interrupted ? ' (interrupted)' : ''}; warm-up ${r.warmupSeconds} s; seed ${r.seed}; ${String(r.machine.cpus)} CPUs, Linux ${String(r.machine.kernel)}, Node ${String(r.machine.node)}${r.machine.namespace ? ', in a network namespace of its own' : ', on the host loopback'}.`,
    '',
  );
  if (r.verdict.failures.length) out.push('## Failures', '', ...r.verdict.failures.map((x) => `- ${x}`), '');
  if (r.skipped.length) out.push('## Not run', '', ...r.skipped.map((s) => `- ${s.what}: ${s.why}`), '');
  out.push('## Memory (RSS) and exits', '', '| process | after warm-up MB | end MB | max MB | growth | exit |', '|---|---:|---:|---:|---:|---|');
  for (const p of r.processes) {
    const m = r.memory.find((x) => x.name === p.name);
    const exit = p.exit
      ? `${p.exit.expected ? 'on SIGTERM' : `**crash** at ${p.exit.at.toFixed(0)} s`}: ${p.exit.code ?? p.exit.signal}${p.exit.killed ? ' (killed)' : ''}`
      : 'running';
    out.push(
      `| ${p.name} | ${m ? mb(m.warmKb) : '-'} | ${m ? mb(m.endKb) : '-'} | ${m ? mb(m.maxKb) : '-'} | ${m ? `${m.growthPct} %${m.flat ? '' : ' **over**'}` : '-'} | ${exit} |`,
    );
  }
  out.push('');
  // RSS over time: about 12 rows.
  const times = r.processes[0]?.rss.map((s) => s.t) ?? [];
  if (times.length) {
    const step = Math.max(1, Math.floor(times.length / 12));
    out.push('RSS over time (MB):', '', `| t (s) | ${r.processes.map((p) => p.name).join(' | ')} |`, `|---:|${r.processes.map(() => '---:').join('|')}|`);
    for (let i = 0; i < times.length; i += step) {
      out.push(`| ${times[i]!.toFixed(0)} | ${r.processes.map((p) => (p.rss[i] ? mb(p.rss[i]!.kb) : '-')).join(' | ')} |`);
    }
    out.push('');
  }
  out.push(
    '## Real traffic',
    '',
    '| target | sent | received (each subscriber) | duplicates | corrupt | missing | explained by counters | unexplained |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const x of r.relays) {
    const subs = x.real.subscribers;
    out.push(
      `| ${x.name} | ${x.real.sent} | ${subs.map((s) => s.unique).join(' / ')} | ${subs.map((s) => s.duplicates).join(' / ')} | ${subs.map((s) => s.corrupt).join(' / ')} | ${subs.map((s) => s.missing).join(' / ')} | ${subs.map((s) => s.missing).reduce((a, b) => a + b, 0) - x.unexplained} | ${x.unexplained} |`,
    );
  }
  if (r.tpo) {
    const t = r.tpo;
    out.push(
      `| tpo UDP | ${t.udp.sent} | ${t.udp.unique} | ${t.udp.duplicates} | ${t.udp.corrupt} | ${t.udp.missing} | ${Math.min(t.udp.missing, t.udp.countedDrops + t.udp.kernelDrops)} | ${Math.max(0, t.udp.missing - t.udp.countedDrops - t.udp.kernelDrops)} |`,
    );
    out.push(
      '',
      `TPO TCP: ${t.tcp.transfers} transfers, ${(t.tcp.bytes / 1e6).toFixed(0)} MB each way, checked by hash both ways; ${t.tcp.corrupt} changed, ${t.tcp.failed} failed${t.tcp.failures.length ? ` (${t.tcp.failures.join('; ')})` : ''}.`,
    );
  }
  out.push(
    '',
    '## Fuzz',
    '',
    '| target | hostile (allowed source) | stranger | flood | replayed | relayable (valid TS) | kernel drops at listen | reflected |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const x of r.relays)
    out.push(
      `| ${x.name} | ${x.fuzz.allowed} | ${x.fuzz.stranger} | ${x.fuzz.flood} | ${x.fuzz.replayed} | ${x.fuzz.relayable} | ${x.listenKernelDrops} | ${x.reflected} |`,
    );
  if (r.tpo) {
    const z = r.tpo.fuzz;
    out.push(
      '',
      `TPO: ${z.rounds} rounds; peer port A ${z.peerPortA} hostile + ${z.replayedA} replayed (counted drops ${r.tpo.peerPortDrops.a}), peer port B ${z.peerPortB} + ${z.replayedB} (counted ${r.tpo.peerPortDrops.b}); UDP listener ${z.strangerUdp} from a stranger; TCP listener ${z.tcpClients} hostile clients, ${z.tcpRefused} refused; control sockets ${z.httpRequests} hostile requests (${Object.entries(
        z.httpStatuses,
      )
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')}); answered to strangers: ${r.tpo.answered}; new sessions A ${r.tpo.newSessions.a}, B ${r.tpo.newSessions.b}.`,
    );
  }
  out.push('', 'Relay counters at exit:', '');
  for (const x of r.relays) {
    const f = ((x.stats?.flows as Record<string, unknown>[] | undefined) ?? [])[0] as
      { packetsIn?: number; packetsOut?: number; drops?: Record<string, number> } | undefined;
    out.push(`- ${x.name}: in ${f?.packetsIn ?? '?'}, out ${f?.packetsOut ?? '?'}, drops ${JSON.stringify(f?.drops ?? {})}`);
  }
  return `${out.join('\n')}\n`;
}

export function writeSoakReport(dir: string, r: SoakReport): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const stamp = r.startedAt.replace(/[:]/g, '').replace(/\..*$/, '');
  const json = join(dir, `soak-${stamp}.json`);
  const md = join(dir, `soak-${stamp}.md`);
  writeFileSync(json, `${JSON.stringify(r, null, 1)}\n`);
  writeFileSync(md, markdown(r));
  return { json, md };
}
