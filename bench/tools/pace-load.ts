/**
 * Pacing bench load (issue #5, part c): sends RATE packets per second for
 * DURATION seconds, each at its own time, and reports how late each send
 * was: the time from a packet's due time to the return of the call that
 * handed it to the kernel, in ms.
 *
 *   --engine sluice     one Sluice.sendAggregate (batched engine) whose delays schedule
 *                       spaces the messages 1/RATE apart: the send worker paces them
 *                       (futex sleep, then a short spin) and sends each with sendmmsg
 *   --engine nanosleep  the plain baseline: a tight loop of clock_nanosleep(TIMER_ABSTIME)
 *                       to each deadline, then one sendto(2), through the same FFI module
 *   --engine nanosleep-slack1  the same with the thread's timer slack set to 1 ns
 *                       (prctl PR_SET_TIMERSLACK), as Sluice's send worker sets its own:
 *                       the default 50 µs slack lets the kernel wake a sleeper that much late
 *
 * Packets of SIZE bytes go round-robin to DESTS ports from FIRST on HOST.
 * Prints {"event":"ready"} after a short warm-up at the same rate, waits
 * for a line on stdin, runs, and prints
 * {"event":"done","engine","rate","sent","lateness":{"p50","p99","max"}}.
 *
 *   --engine E --rate R --duration S --size B --host H --first P --dests K
 */
import { createInterface } from 'node:readline';
import { Sluice } from '../../src/index.js';
import { percentiles } from '../../src/sender/results.js';
import { libc } from '../../src/sys/ffi.js';
import { flag, openSendto } from './load-common.js';

const get = flag;
const engine = get('engine');
const rate = Number(get('rate'));
const durationS = Number(get('duration', '1'));
const size = Number(get('size', '200'));
const host = get('host');
const first = Number(get('first'));
const dests = Number(get('dests', '10'));
const payload = Buffer.alloc(size, 0x47);
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

const CLOCK_MONOTONIC = 1;
const TIMER_ABSTIME = 1;

const sluice = engine === 'sluice' ? await Sluice.open({ tier: 'batched' }) : undefined;
const destinations = Array.from({ length: dests }, (_, d) => `udp://${host}:${first + d}`);

async function runSluice(n: number): Promise<{ sent: number; lateness: { p50: number; p99: number; max: number } }> {
  const period = 1000 / rate;
  const messages = Array.from({ length: n }, (_, i) => ({ to: destinations[i % dests]!, data: payload }));
  const r = await sluice!.sendAggregate({ messages, schedule: { kind: 'delays', delaysMs: messages.map((_, i) => i * period) }, maxLatenessMs: 60_000 });
  return { sent: r.sent, lateness: r.lateness };
}

/** The baseline loop. Deadlines and readings on CLOCK_MONOTONIC, in ns (doubles: exact to well below a µs). */
function runNanosleep(n: number): { sent: number; lateness: { p50: number; p99: number; max: number } } {
  const c = libc();
  const sock = openSendto(host, first, dests, payload);
  const ts = new BigInt64Array(2);
  const now = (): number => {
    c.clock_gettime(CLOCK_MONOTONIC, ts);
    return Number(ts[0]!) * 1e9 + Number(ts[1]!);
  };
  if (engine === 'nanosleep-slack1') c.prctl(29 /* PR_SET_TIMERSLACK */, 1);
  const periodNs = 1e9 / rate;
  const late = new Float64Array(n);
  let sent = 0;
  try {
    const t0 = now();
    for (let i = 0; i < n; i++) {
      const deadline = t0 + i * periodNs;
      ts[0] = BigInt(Math.floor(deadline / 1e9));
      ts[1] = BigInt(Math.floor(deadline % 1e9));
      c.clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ts, null);
      if (sock.send(i) >= 0) sent++;
      late[i] = Math.max(0, now() - deadline) / 1e6;
    }
  } finally {
    sock.close();
  }
  return { sent, lateness: percentiles(late) };
}

const run = (n: number) => (engine === 'sluice' ? runSluice(n) : Promise.resolve(runNanosleep(n)));
const count = Math.max(1, Math.round(rate * durationS));
// Warm-up at the same rate: threads started, hot paths compiled.
for (let i = 0; i < 3; i++) await run(Math.max(1, Math.round(rate * 0.2)));
emit({ event: 'ready' });
const rl = createInterface({ input: process.stdin });
await new Promise<void>((r) => rl.once('line', () => r()));
rl.close();
const r = await run(count);
await sluice?.close();
emit({ event: 'done', engine, rate, count, ...r });
