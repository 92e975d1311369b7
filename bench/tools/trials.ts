/**
 * Print every trial of a bench result file, one line each, for checking
 * where loss happened: `node --import tsx bench/tools/trials.ts bench/results/<stamp>.json [filter-regex]`.
 * Columns: rate asked, sent, delivered, loss, relay receive-buffer drops,
 * host backlog drops, relay CPU %, relay CPU µs/pkt, core µs/pkt.
 */
import { readFileSync } from 'node:fs';
import type { CaseRecord } from '../lib/report.js';
import type { TrialResult } from '../lib/trial.js';

const [file, filter] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: trials.ts RESULT.json [regex on "caseId peer"]\n');
  process.exit(2);
}
const re = filter ? new RegExp(filter) : undefined;
const { records } = JSON.parse(readFileSync(file, 'utf8')) as { records: CaseRecord[] };
const f = (v: number, d = 0): string => (Number.isFinite(v) ? v.toFixed(d) : '-');
for (const r of records) {
  const label = `${r.caseId} ${r.peer}`;
  if (re && !re.test(label)) continue;
  if (r.error) {
    process.stdout.write(`r${r.repeat} ${label}  ERROR ${r.error.split('\n')[0]}\n`);
    continue;
  }
  const trials: TrialResult[] = r.search?.trials ?? (r.trial ? [r.trial] : []);
  for (const t of trials) {
    process.stdout.write(
      `r${r.repeat} ${label.padEnd(36)} rate ${String(t.rate).padStart(7)} sent ${String(t.sent).padStart(8)} got ${String(t.delivered).padStart(9)}` +
        ` loss ${f(100 * t.loss, 3).padStart(7)}% rcvbuf ${String(t.relayRcvbufErrors).padStart(6)} backlog ${String(t.backlogDrops ?? 0).padStart(6)}${t.backlogDropsByCpu ? ` [${t.backlogDropsByCpu.join(',')}]` : ''}` +
        ` sq ${t.softirqSqueezes ?? 0}` +
        ` cpu ${f(t.cpuPct, 1).padStart(5)}% ${f(t.cpuUsPerPkt, 2).padStart(7)} µs/pkt core ${f(t.coreUsPerPkt, 2).padStart(7)}${t.genLimited ? ' GEN-LIMITED' : ''}\n`,
    );
  }
}
