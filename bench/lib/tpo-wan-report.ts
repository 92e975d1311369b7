/**
 * The tpo-wan suite's markdown: per profile, every path's medians and
 * min–max over repeats; the ratios Sluice ÷ direct CUBIC, ÷ direct BBR and
 * ÷ the better kcptun (medians of per-repeat ratios); and issue 18's
 * targets, each with its goal, what was measured and whether it was met.
 */
import { pairedRatio, spread, type Spread } from './stats.js';
import { TPO_WAN_VARIANTS, ccOf, type TpoWanVariant } from './tpo-wan-paths.js';
import { lossesOf, profileTitle, type TpoWanProfile } from './tpo-wan-profiles.js';
import type { TpoWanResults } from './tpo-wan-suite.js';
import type { TpoWanTrial } from './tpo-wan-trial.js';

/** `d` decimals; `grouped`: thousands grouped, for the README (loopback reaches 13,000 Mbit/s). */
const f = (v: number | undefined, d = 2, grouped = false): string =>
  v === undefined || !Number.isFinite(v) ? '–' : grouped ? v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : v.toFixed(d);
const sp = (s: Spread | undefined, d = 2, grouped = false): string =>
  s ? (s.n > 1 ? `${f(s.median, d, grouped)} (${f(s.min, d, grouped)}–${f(s.max, d, grouped)})` : f(s.median, d, grouped)) : '–';
const pct = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(0)} %`);

type Pick = (t: TpoWanTrial) => number | undefined;
const goodput: Pick = (t) => t.goodputMbit;
const rrP50: Pick = (t) => t.rr?.p50;
const rrP99: Pick = (t) => t.rr?.p99;
const perGB =
  (what: 'tunnelS' | 'endpointsS'): Pick =>
  (t) => {
    const s = t.cpu?.[what];
    return s === undefined || !t.deliveredBytes ? undefined : s / (t.deliveredBytes / 1e9);
  };

/** A profile's loss level, as the report names it. */
interface Cell {
  profile: TpoWanProfile;
  loss: number;
}

function ok(r: TpoWanResults, c: Cell, v: TpoWanVariant): TpoWanTrial[] {
  return r.trials
    .filter((t) => t.profile === c.profile.id && t.loss === c.loss && t.variant === v && !t.error && !t.unavailable)
    .sort((a, b) => a.repeat - b.repeat);
}

const spreadOf = (r: TpoWanResults, c: Cell, v: TpoWanVariant, pick: Pick): Spread | undefined =>
  spread(ok(r, c, v).flatMap((t) => (pick(t) === undefined ? [] : [pick(t)!])));

/** Paired per-repeat ratio, variant a ÷ variant b. */
function ratio(r: TpoWanResults, c: Cell, a: TpoWanVariant, b: TpoWanVariant, pick: Pick = goodput): Spread | undefined {
  const A = ok(r, c, a);
  const B = ok(r, c, b);
  const reps = A.map((t) => t.repeat).filter((rep) => B.some((u) => u.repeat === rep));
  return pairedRatio(
    reps.map((rep) => pick(A.find((t) => t.repeat === rep)!) ?? NaN),
    reps.map((rep) => pick(B.find((t) => t.repeat === rep)!) ?? NaN),
  );
}

function cells(r: TpoWanResults): Cell[] {
  return r.profiles.flatMap((profile) => lossesOf(profile, r.quick).map((loss) => ({ profile, loss })));
}

const lossName = (c: Cell): string => (c.profile.kind === 'wan' ? `${c.loss * 100} %` : '–');

function pathTable(r: TpoWanResults, c: Cell, out: string[]): void {
  for (const v of TPO_WAN_VARIANTS) {
    const all = r.trials.filter((t) => t.profile === c.profile.id && t.loss === c.loss && t.variant === v);
    if (all.length === 0) continue;
    const good = ok(r, c, v);
    if (good.length === 0) {
      const why = all.find((t) => t.unavailable)?.unavailable ?? all.find((t) => t.error)?.error?.split('\n')[0] ?? '';
      out.push(`| ${lossName(c)} | ${v} | ${ccOf(v)} | ${all.some((t) => t.unavailable) ? 'unavailable' : 'error'}: ${why} | | | | | | | | |`);
      continue;
    }
    const ccs = [...new Set(good.map((t) => t.cc))].join(', ');
    const busiest = good.map((t) => t.cpu?.busiest).filter((b) => b !== undefined);
    const top = busiest.sort((a, b) => b.share - a.share)[0];
    const incomplete = good.filter((t) => t.completed === false).length;
    out.push(
      `| ${lossName(c)} | ${v} | ${ccs} | ${sp(spreadOf(r, c, v, goodput))}${incomplete ? ` (${incomplete} incomplete)` : ''} | ${sp(spreadOf(r, c, v, (t) => t.steadyMbit))} | ` +
        `${sp(spreadOf(r, c, v, rrP50), 1)} | ${sp(spreadOf(r, c, v, rrP99), 1)} | ` +
        `${sp(spreadOf(r, c, v, perGB('tunnelS')), 1)} | ${sp(spreadOf(r, c, v, perGB('endpointsS')), 1)} | ` +
        `${top ? `${top.thread.replace(/\/\d+$/, '')} ${pct(top.share)}` : '–'} | ${pct(spreadOf(r, c, v, (t) => t.cpu?.hostBusy)?.median)} | ` +
        `${f(spreadOf(r, c, v, (t) => t.wirePerDelivered)?.median, 3)} | ${c.profile.kind === 'wan' ? `${f((spreadOf(r, c, v, (t) => t.emulator?.lateOver1ms)?.median ?? NaN) * 100, 2)} %` : '–'} |`,
    );
  }
}

function kcptunBest(r: TpoWanResults, c: Cell): TpoWanVariant {
  const med = (v: TpoWanVariant): number => spreadOf(r, c, v, goodput)?.median ?? -1;
  return med('kcptun-fast3') >= med('kcptun-default') ? 'kcptun-fast3' : 'kcptun-default';
}

function ratioTable(r: TpoWanResults, out: string[]): void {
  out.push(
    '| profile | loss | Sluice session | Sluice ÷ direct CUBIC | Sluice ÷ direct BBR | Sluice ÷ kcptun best | BBR ÷ CUBIC | rr p50: Sluice ÷ BBR | tunnel CPU/GB: Sluice ÷ kcptun best |',
  );
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const c of cells(r)) {
    const best = kcptunBest(r, c);
    const bestName = ok(r, c, best).length ? best : 'kcptun';
    for (const [v, name] of [
      ['sluice-cubic', 'new'],
      ['sluice-cubic-established', 'established'],
    ] as const) {
      if (ok(r, c, v).length === 0) continue;
      out.push(
        `| ${c.profile.id} | ${lossName(c)} | ${name} | ${sp(ratio(r, c, v, 'direct-cubic'))} | ${sp(ratio(r, c, v, 'direct-bbr'))} | ` +
          `${sp(ratio(r, c, v, best))} (${bestName}) | ${sp(ratio(r, c, 'direct-bbr', 'direct-cubic'))} | ${sp(ratio(r, c, v, 'direct-bbr', rrP50))} | ` +
          `${sp(ratio(r, c, v, best, perGB('tunnelS')))} |`,
      );
    }
  }
}

/** One target row: the measured spread, the goal, and whether its median meets it. */
function targetRow(out: string[], what: string, goal: string, s: Spread | undefined, met: (m: number) => boolean, note = ''): void {
  const verdict = s ? (met(s.median) ? 'yes' : 'no') : 'not run';
  out.push(`| ${what} | ${goal} | ${sp(s)}${note} | ${verdict} |`);
}

function targetsTable(r: TpoWanResults, out: string[]): void {
  out.push('| target (issue 18) | goal | measured: median (min–max) | met |');
  out.push('| --- | --- | --- | --- |');
  const find = (id: string, loss: number): Cell | undefined => {
    const profile = r.profiles.find((p) => p.id === id);
    return profile && lossesOf(profile, r.quick).includes(loss) ? { profile, loss } : undefined;
  };
  const loop = r.profiles.find((p) => p.kind === 'loopback');
  if (loop) {
    const c = { profile: loop, loss: 0 };
    const s = spreadOf(r, c, 'sluice-cubic', goodput);
    const busy = spreadOf(r, c, 'sluice-cubic', (t) => t.cpu?.busiest?.share)?.median;
    const host = spreadOf(r, c, 'sluice-cubic', (t) => t.cpu?.hostBusy)?.median;
    const cpuBound = (busy ?? 0) >= 0.9 || (host ?? 0) >= 0.9;
    const verdict = !s ? 'not run' : s.median >= 1000 ? 'yes' : cpuBound ? 'CPU-bound (see busiest thread)' : 'no';
    out.push(
      `| loopback, Sluice pair, new session: Mbit/s | ≥ 1000, or CPU-bound | ${sp(s, 0)}; busiest gateway thread ${pct(busy)} of a CPU, host ${pct(host)} busy | ${verdict} |`,
    );
  }
  const c200 = find('200m-10ms', 0);
  if (c200) {
    targetRow(out, '200 Mbit/s, 10 ms, no loss: Sluice ÷ direct CUBIC', '≥ 0.95×', ratio(r, c200, 'sluice-cubic', 'direct-cubic'), (m) => m >= 0.95);
    targetRow(out, '200 Mbit/s, 10 ms, no loss: Sluice ÷ direct BBR', '≥ 0.95×', ratio(r, c200, 'sluice-cubic', 'direct-bbr'), (m) => m >= 0.95);
  }
  for (const loss of [0.01, 0.03]) {
    const c = find('50m-100ms', loss);
    if (c)
      targetRow(
        out,
        `50 Mbit/s, 100 ms, ${loss * 100} % loss: Sluice (new session) ÷ direct BBR`,
        '≥ 1.05×',
        ratio(r, c, 'sluice-cubic', 'direct-bbr'),
        (m) => m >= 1.05,
      );
  }
  for (const c of cells(r)) {
    const name = `${c.profile.id}${c.profile.kind === 'wan' ? ` ${c.loss * 100} %` : ''}`;
    const s = ratio(r, c, 'sluice-cubic', 'direct-bbr', rrP50);
    const abs = `; ${f(spreadOf(r, c, 'sluice-cubic', rrP50)?.median, 1)} vs ${f(spreadOf(r, c, 'direct-bbr', rrP50)?.median, 1)} ms`;
    targetRow(out, `rr p50 during bulk, ${name}: Sluice (new session) ÷ direct BBR`, '≤ 1.1×', s, (m) => m <= 1.1, s ? abs : '');
  }
}

/**
 * The README's tables, rendered from a run's results so the README copies
 * them rather than retyping figures (test/bench/tpo-wan-readme.test.ts
 * checks the copy): per profile and loss, the paths' median goodput,
 * Sluice ÷ direct BBR and request/response p50 (p99); then the
 * established session and what each tunnel's processes spent per
 * delivered GB.
 */
export function tpoWanReadmeTable(r: TpoWanResults): string {
  const main = [
    '| path | direct CUBIC | direct BBR | kcptun (better profile) | Sluice pair (new session) | Sluice ÷ BBR | request/response during the bulk, p50 (p99): BBR / Sluice |',
    '|---|---|---|---|---|---|---|',
  ];
  const more = ['| path | Sluice pair (established session) | ÷ BBR | tunnel CPU s/GB: Sluice (new session) / kcptun |', '|---|---|---|---|'];
  for (const c of cells(r)) {
    const med = (v: TpoWanVariant, pick: Pick = goodput) => spreadOf(r, c, v, pick)?.median;
    // Loopback runs at thousands of Mbit/s: whole numbers there, with their spread (one trial's warm-up weighs more).
    const loop = c.profile.kind === 'loopback';
    const d = loop ? 0 : 1;
    const mbit = (v: TpoWanVariant) => (loop ? sp(spreadOf(r, c, v, goodput), d, true) : f(med(v), d, true));
    const path =
      c.profile.kind === 'wan'
        ? `${c.profile.rateMbit} Mbit/s, ${c.profile.rttMs} ms, ${c.loss ? `${c.loss * 100} % loss` : 'no loss'}`
        : `loopback, ${r.quick ? c.profile.quickMb : c.profile.mb} MB`;
    const host = med('sluice-cubic', (t) => t.cpu?.hostBusy);
    const sluiceCell = mbit('sluice-cubic') + (host !== undefined && host >= 0.85 ? ` (host ${pct(host)} busy)` : '');
    const rr = (v: TpoWanVariant) => `${f(med(v, rrP50), 1)} (${f(med(v, rrP99), 0)})`;
    const cellOf = (v: TpoWanVariant) => f(med(v), d, true);
    main.push(
      `| ${path} | ${cellOf('direct-cubic')} | ${cellOf('direct-bbr')} | ${cellOf(kcptunBest(r, c))} | ${sluiceCell} | ` +
        `${f(ratio(r, c, 'sluice-cubic', 'direct-bbr')?.median)} | ${rr('direct-bbr')} / ${rr('sluice-cubic')} ms, ${f(ratio(r, c, 'sluice-cubic', 'direct-bbr', rrP50)?.median)}× |`,
    );
    more.push(
      `| ${path} | ${mbit('sluice-cubic-established')} | ${f(ratio(r, c, 'sluice-cubic-established', 'direct-bbr')?.median)} | ` +
        `${f(med('sluice-cubic', perGB('tunnelS')), 1)} / ${f(med(kcptunBest(r, c), perGB('tunnelS')), 1)} |`,
    );
  }
  return `${main.join('\n')}\n\n${more.join('\n')}`;
}

export function tpoWanMarkdown(r: TpoWanResults): string {
  if (r.trials.length === 0) return '';
  const out: string[] = [];
  out.push('## tpo-wan: TCP across emulated WANs and loopback');
  out.push('');
  out.push(
    `Every path side by side per profile, repeats interleaved. Emulated WAN (harness/bin/ip-wan-emu.ts, random loss both ways): bulk client → server for the profile's time; goodput counts what the server received in that window, "steady" leaves out the first seconds (slow start). Loopback: no emulator, everything on 127.0.0.1 in a namespace of the bench's own; a fixed-size transfer timed until the server closed. During the bulk, 100-byte request/response exchanges on a second connection (rr). CPU per delivered GB: user + system time of the tunnel's processes (kcptun client + server, or both Sluice gateways; direct TCP has none: the kernel forwards) and of the endpoints (sender + sink); softirq work outside their system calls is in nobody's count, the host's busy share is beside it. Busiest thread: the tunnel's thread with the most CPU, as a share of one CPU over the transfer (the largest over repeats). Wire = IP bytes that entered the WAN client → server per delivered byte; emulator late = share of frames it released more than 1 ms late (its own timing error). Medians over repeats (min–max when more than one).${r.quick ? ' Quick run: shorter transfers, fewer loss levels.' : ''} kcptun ${r.versions.kcptun ?? '?'}.`,
  );
  out.push('');
  for (const profile of r.profiles) {
    out.push(
      `### ${profileTitle(profile)} (\`${profile.id}\`, ${profile.kind === 'wan' ? `${r.quick ? profile.quickSeconds : profile.seconds} s per transfer` : `${r.quick ? profile.quickMb : profile.mb} MB per transfer, at most ${profile.maxS} s`})`,
    );
    out.push('');
    out.push(
      '| loss | path | cc | goodput Mbit/s | steady Mbit/s | rr p50 ms | rr p99 ms | tunnel CPU s/GB | endpoints CPU s/GB | busiest tunnel thread | host busy | wire / delivered | emulator late > 1 ms |',
    );
    out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const loss of lossesOf(profile, r.quick)) pathTable(r, { profile, loss }, out);
    out.push('');
  }
  out.push(
    '### Ratios\n\nMedians of per-repeat ratios (min–max). "kcptun best": the kcptun profile with the higher median goodput there. "new session": the gateways start with the trial; "established": their session carried a transfer before.',
  );
  out.push('');
  ratioTable(r, out);
  out.push('');
  out.push('### Issue 18 targets\n');
  targetsTable(r, out);
  out.push('');
  out.push('### For the README\n');
  out.push(tpoWanReadmeTable(r));
  out.push('');
  return out.join('\n');
}
