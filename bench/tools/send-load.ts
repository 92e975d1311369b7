/**
 * Sender bench load: sends COUNT datagrams of SIZE bytes to DESTS ports
 * from FIRST on HOST, one way, as fast as that way goes.
 *
 * One-shot messages (part a), round-robin over the destinations:
 *   aggregate     one Sluice.sendAggregate (batched engine) with every message due at once
 *   dgram         node:dgram, one socket.send per datagram
 *   sendto        one sendto(2) per datagram through Sluice's FFI module
 *
 * Segmented writes (parts b and d): Sluice.write of DESTS entries of
 * WRITE_PACKETS x SIZE bytes each (SIZE = packetSize), repeated to COUNT:
 *   write-gso     burst 64, UDP GSO (runs of up to 64 packets to one destination in one
 *                 message; 49 of 1316 B fit the 65 KB GSO limit)
 *   write-gso16   burst 16, UDP GSO
 *   write-nogso   burst 64, gso 'never' (the same order, one packet per message)
 *   write-strict  burst 1: strict interleave
 *   write-dgram   node:dgram, one send per packet, each entry in turn (not interleaved),
 *                 as an application without Sluice would write it
 *
 * Prints {"event":"ready"} (after a warm-up of WARMUP_ROUNDS x 10,000 datagrams sent the
 * same way, which starts Sluice's threads and lets V8 compile the hot
 * paths of every way: the bench compares steady-state costs, not JIT
 * warm-up) and waits for a line on stdin (so the harness can attach its
 * counters to this pid), then sends and prints
 * {"event":"done","mode","sent","errors","elapsedS"}.
 *
 *   --mode M --count N --size S --host H --first P --dests K
 */
import { createInterface } from 'node:readline';
import { Sluice } from '../../src/index.js';
import { libc } from '../../src/sys/ffi.js';
import { EAGAIN } from '../../src/sys/errno.js';
import { flag, openDgramWindows, openSendto } from './load-common.js';

const get = flag;
const mode = get('mode');
const count = Number(get('count'));
const size = Number(get('size'));
const host = get('host');
const first = Number(get('first'));
const dests = Number(get('dests', '10'));
const payload = Buffer.alloc(size, 0x47);
/** An application holds its destinations; it does not format a new string per packet. */
const destinations = Array.from({ length: dests }, (_, d) => `udp://${host}:${first + d}`);
/** Warm-up: this many rounds of 10,000 datagrams (V8 optimizes a function after several calls, not one long one). */
const WARMUP_ROUNDS = 8;
/** Packets per write entry: a write is DESTS x WRITE_PACKETS packets (10 x 1000 by default). */
const WRITE_PACKETS = 1000;
const WRITE_BURST = { 'write-gso': 64, 'write-gso16': 16, 'write-nogso': 64, 'write-strict': 1 } as Record<string, number>;

const emit = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

const sluice = mode === 'aggregate' || mode in WRITE_BURST ? await Sluice.open({ tier: 'batched' }) : undefined;
/** The write entries' data: one buffer per destination (views of it are the packets). */
const entryData = Array.from({ length: dests }, (_, d) => Buffer.alloc(WRITE_PACKETS * size, 0x30 + (d % 10)));

async function run(count: number, close: boolean): Promise<{ sent: number; errors: number }> {
  if (mode in WRITE_BURST) {
    const s = sluice!;
    try {
      let sent = 0;
      let errors = 0;
      const entries = destinations.map((to, d) => ({ to, data: entryData[d]! }));
      const options = { packetSize: size, burst: WRITE_BURST[mode]!, gso: mode === 'write-nogso' ? ('never' as const) : ('auto' as const) };
      for (let done = 0; done < count; done += dests * WRITE_PACKETS) {
        const r = await s.write(entries, options);
        sent += r.sent;
        errors += r.errors;
      }
      return { sent, errors };
    } finally {
      if (close) await s.close();
    }
  }
  if (mode === 'write-dgram') {
    const d = await openDgramWindows();
    // Each entry in turn, one window per entry.
    for (let done = 0; done < count;) {
      for (let e = 0; e < dests && done < count; e++) {
        const data = entryData[e]!;
        await d.window(WRITE_PACKETS, (k, sock, cb) => sock.send(data.subarray(k * size, (k + 1) * size), first + e, host, cb));
        done += WRITE_PACKETS;
      }
    }
    return d.close();
  }
  if (mode === 'aggregate') {
    const s = sluice!;
    try {
      let sent = 0;
      let errors = 0;
      // At most 65,536 messages per aggregate.
      for (let done = 0; done < count;) {
        const n = Math.min(65_536, count - done);
        const messages = Array.from({ length: n }, (_, i) => ({ to: destinations[(done + i) % dests]!, data: payload }));
        const r = await s.sendAggregate({ messages, schedule: { kind: 'delays', delaysMs: messages.map(() => 0) }, maxLatenessMs: 60_000 });
        sent += r.sent;
        errors += r.dropped;
        done += n;
      }
      return { sent, errors };
    } finally {
      if (close) await s.close();
    }
  }
  if (mode === 'dgram') {
    const d = await openDgramWindows();
    for (let done = 0; done < count;) {
      const n = Math.min(4096, count - done);
      const base = done;
      await d.window(n, (i, sock, cb) => sock.send(payload, first + ((base + i) % dests), host, cb));
      done += n;
    }
    return d.close();
  }
  if (mode === 'sendto') {
    const c = libc();
    const s = openSendto(host, first, dests, payload);
    let sent = 0;
    let errors = 0;
    for (let i = 0; i < count;) {
      const r = s.send(i);
      if (r >= 0) {
        sent++;
        i++;
      } else if (c.errno() === EAGAIN) {
        continue; // non-blocking socket, buffer full: try again
      } else {
        errors++;
        i++;
      }
    }
    s.close();
    return { sent, errors };
  }
  throw new Error(`unknown --mode ${mode}`);
}

for (let i = 0; i < WARMUP_ROUNDS; i++) await run(10_000, false);
emit({ event: 'ready' });
const rl = createInterface({ input: process.stdin });
await new Promise<void>((r) => rl.once('line', () => r()));
rl.close();
const t0 = performance.now();
const cpu0 = process.cpuUsage();
const r = await run(count, true);
const cpu = process.cpuUsage(cpu0);
emit({ event: 'done', mode, ...r, elapsedS: (performance.now() - t0) / 1000, processCpuS: (cpu.user + cpu.system) / 1e6 });
