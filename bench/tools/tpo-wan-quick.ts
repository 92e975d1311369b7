/**
 * One quick look at the TPO pair on an emulated WAN of a chosen rate and
 * RTT, against direct TCP over the same path (issue 18): the three-site
 * topology (harness/wan/topology.ts; root), the user-space emulator with
 * --loss-pct random loss (both directions), a bulk TCP transfer of
 * --seconds (bounded in bytes too) for each of --variants (direct-cubic,
 * direct-bbr: TCP straight across; sluice-cubic: CUBIC through the gateway
 * pair, explicit mode; sluice-cubic-fec: the same with the table entry
 * latency-sensitive, so the rr flow's messages go twice), in that order, --repeats times (variants
 * interleaved). With --rr, a 100-byte request/response every 50 ms runs on
 * a second connection during the bulk transfer (as the tpo-wan suite's),
 * and its latency quantiles are reported (the first 2 s left out). Prints
 * one JSON line per run: goodput, goodput after the first 2 s, rr latency,
 * the emulator's bottleneck queue (client → server, sampled every 200 ms),
 * and the CPU seconds of the emulator and of each gateway process (and its
 * threads) during the transfer, and the share of the whole host's CPU that
 * was busy meanwhile.
 *
 *   node --import tsx bench/tools/tpo-wan-quick.ts [--rate-mbit 200] [--rtt-ms 10] [--seconds 8]
 *     [--loss-pct 0] [--variants direct-cubic,sluice-cubic] [--repeats 1] [--rr] [--rr-size 100] [--cpu-prof DIR] [--initial-rate 25M] [--trace] [--max-bytes N] [--node-args "--trace-gc"]
 */
import { writeFileSync } from 'node:fs';
import { createWanTopology, WAN_ADDR } from '../../harness/wan/topology.js';
import { startGatewayPair } from '../../harness/tpo/gateway-pair.js';
import type { NsProcess } from '../../harness/netns/netns.js';
import { flag } from './load-common.js';
import { hostJiffies as machine, processSeconds, threadDiff as diff, threadSeconds } from '../lib/cpu.js';

const RATE_MBIT = Number(flag('rate-mbit', '200'));
const RTT_MS = Number(flag('rtt-ms', '10'));
const SECONDS = Math.min(30, Number(flag('seconds', '8')));
const LOSS = Number(flag('loss-pct', '0')) / 100;
const VARIANTS = flag('variants', 'direct-cubic,sluice-cubic').split(',');
const REPEATS = Math.max(1, Number(flag('repeats', '1')));
const RR = process.argv.includes('--rr');
/** The gateways' `initialRate` (e.g. 25M): what a new session starts from when the operator states the path. */
const INITIAL_RATE = process.argv.includes('--initial-rate') ? flag('initial-rate') : undefined;
/** A directory: the gateways run with `--cpu-prof` and write their profiles there (on a clean exit). */
const PROF_DIR = process.argv.includes('--cpu-prof') ? flag('cpu-prof') : undefined;
/** More node options for the gateways (space-separated, e.g. "--trace-deopt"); their stdout goes to /tmp/tpo-wan-quick-gw{a,b}.log. */
const NODE_ARGS = process.argv.includes('--node-args') ? flag('node-args').split(' ').filter(Boolean) : [];
const GW_NODE_ARGS = [...(PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : []), ...NODE_ARGS];
/** Every 100 ms of a Sluice transfer, the sending gateway's view of its peer (rate control, queue, in flight) on stderr. */
const TRACE = process.argv.includes('--trace');
/** Bytes per rr request and response (a multiple of 100): above a segment, a latency-sensitive flow's burst is protected by parity rather than copies. */
const RR_SIZE = Number(flag('rr-size', '100'));
/** Caps the bulk transfer's bytes (default: 1.5 × the path's rate for --seconds); a small value leaves the rr flow nearly alone, its latency without the bulk. */
const MAX_BYTES = process.argv.includes('--max-bytes') ? Number(flag('max-bytes')) : undefined;
for (const v of VARIANTS) if (!['direct-cubic', 'direct-bbr', 'sluice-cubic', 'sluice-cubic-fec'].includes(v)) throw new Error(`unknown variant ${v}`);
const SINK_PORT = 5201;
const LOAD = 'harness/traffic/wan-load.ts';
const cpu = (p: NsProcess | undefined): number => processSeconds(p?.child.pid);
const threads = (p: NsProcess | undefined): Record<string, number> => threadSeconds(p?.child.pid);

const wt = await createWanTopology();
try {
  for (let repeat = 0; repeat < REPEATS; repeat++)
    for (const variant of VARIANTS) {
      const cc = variant === 'direct-bbr' ? 'bbr' : 'cubic';
      const emu = await wt.startEmulator({ common: { delayMs: RTT_MS / 2, rateBps: RATE_MBIT * 1e6, loss: LOSS }, seed: 1 + repeat });
      const sink = wt.topo.runNode('server', LOAD, ['tcp-sink', '--port', String(SINK_PORT)], { stdin: 'pipe' });
      const pair = variant.startsWith('sluice-cubic')
        ? await startGatewayPair(wt, {
            mode: 'explicit',
            tcpTarget: SINK_PORT,
            listenPort: 12949,
            ...(variant === 'sluice-cubic-fec' ? { latencySensitive: true } : {}),
            ...(INITIAL_RATE ? { initialRate: INITIAL_RATE } : {}),
            ...(GW_NODE_ARGS.length ? { nodeArgs: GW_NODE_ARGS } : {}),
          })
        : undefined;
      try {
        await sink.waitForLine(/"event":"ready"/, { timeoutMs: 15_000 });
        const target = pair ? pair.tcpTarget : `${WAN_ADDR.server}:${SINK_PORT}`;
        const cpu0 = { emu: cpu(emu.proc), a: cpu(pair?.gwa), b: cpu(pair?.gwb) };
        const threads0 = { a: threads(pair?.gwa), b: threads(pair?.gwb) };
        const machine0 = machine();
        const maxBytes = MAX_BYTES ?? Math.ceil(((RATE_MBIT * 1e6) / 8) * SECONDS * 1.5);
        const send = wt.topo.runNode('client', LOAD, ['tcp-send', '--to', target, '--seconds', String(SECONDS), '--max-bytes', String(maxBytes), '--cc', cc]);
        const rr = RR
          ? wt.topo.runNode('client', LOAD, [
              'rr-client',
              '--to',
              target,
              '--seconds',
              String(SECONDS - 1),
              '--interval-ms',
              '50',
              '--warmup-s',
              '2',
              '--size',
              String(RR_SIZE),
              '--cc',
              cc,
            ])
          : undefined;
        // The bottleneck queue client → server (the emulator's model, free of host timing), sampled
        // every 200 ms after the first 2 s: what an interactive flow waits behind, apart from the hosts.
        const queueMs: number[] = [];
        let sending = true;
        const sampler = (async () => {
          const t0 = Date.now();
          while (sending) {
            await new Promise((r) => setTimeout(r, 200));
            if (!sending || Date.now() - t0 < 2000) continue;
            const st = await emu.stats().catch(() => undefined);
            if (st) queueMs.push((st.aToB.queuedBytes * 8 * 1000) / (RATE_MBIT * 1e6));
          }
        })();
        const tracer = (async () => {
          const t0 = Date.now();
          while (TRACE && pair && sending) {
            await new Promise((r) => setTimeout(r, 100));
            const p = (await pair.status('a').catch(() => undefined))?.peers[0];
            if (p) {
              const { srttMs, bandwidthMbit, pacingMbit, rate, queuedBytes, inFlightBytes, bytesSent, lost, retransmissions } = p;
              process.stderr.write(
                `${JSON.stringify({ t: (Date.now() - t0) / 1000, srttMs, bandwidthMbit, pacingMbit, ...rate, queuedBytes, inFlightBytes, bytesSent, lost, retransmissions })}\n`,
              );
            }
          }
        })();
        await Promise.all([send.waitExit((SECONDS + 30) * 1000), rr?.waitExit((SECONDS + 30) * 1000)]);
        sending = false;
        await sampler;
        await tracer;
        const queueSorted = [...queueMs].sort((x, y) => x - y);
        const rrDone = rr?.jsonLines<{ event: string; n: number; p50: number; p90: number; p99: number }>().find((l) => l.event === 'done');
        const used = { emu: cpu(emu.proc) - cpu0.emu, a: cpu(pair?.gwa) - cpu0.a, b: cpu(pair?.gwb) - cpu0.b };
        const machine1 = machine();
        const hostBusy = (machine1.busy - machine0.busy) / (machine1.total - machine0.total);
        const perThread = { gwa: diff(threads0.a, threads(pair?.gwa)), gwb: diff(threads0.b, threads(pair?.gwb)) };
        const status = pair ? await pair.status('a') : undefined;
        const deadline = Date.now() + 30_000;
        while (!sink.jsonLines<{ event: string }>().some((l) => l.event === 'conn') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        const conn = sink.jsonLines<{ event: string; bytes: number; bins: number[] }>().find((l) => l.event === 'conn');
        const bins = conn?.bins ?? [];
        const inWindow = bins.slice(0, SECONDS).reduce((x, y) => x + y, 0);
        const steady = bins.slice(2, SECONDS).reduce((x, y) => x + y, 0);
        const p = status?.peers[0];
        const statusB = pair ? await pair.status('b') : undefined;
        const pb = statusB?.peers[0];
        // Datagrams per system call and per receive batch: what the per-datagram CPU cost follows.
        const batching = (st: typeof status) => {
          if (!st) return undefined;
          const b = st.port.batching;
          return {
            perSendCall: +(st.port.datagramsSent / Math.max(1, b.sendCalls)).toFixed(1),
            perReceiveBatch: +(st.port.datagramsReceived / Math.max(1, b.receiveBatches)).toFixed(1),
            groBuffers: b.groBuffers,
          };
        };
        process.stdout.write(
          `${JSON.stringify({
            variant,
            repeat,
            cc,
            rateMbit: RATE_MBIT,
            rttMs: RTT_MS,
            lossPct: LOSS * 100,
            goodputMbit: +((inWindow * 8) / SECONDS / 1e6).toFixed(1),
            after2sMbit: +((steady * 8) / (SECONDS - 2) / 1e6).toFixed(1),
            // Second by second: where a new session's startup shows.
            perSecondMbit: bins.slice(0, SECONDS).map((b) => +((b * 8) / 1e6).toFixed(1)),
            ...(rrDone ? { rr: { n: rrDone.n, p50: +rrDone.p50.toFixed(1), p90: +rrDone.p90.toFixed(1), p99: +rrDone.p99.toFixed(1) } } : {}),
            cpuS: { emulator: +used.emu.toFixed(2), gwa: +used.a.toFixed(2), gwb: +used.b.toFixed(2) },
            hostBusy: +hostBusy.toFixed(2),
            ...(queueSorted.length
              ? {
                  bottleneckQueueMs: {
                    n: queueSorted.length,
                    p50: +queueSorted[Math.floor(queueSorted.length / 2)]!.toFixed(1),
                    mean: +(queueSorted.reduce((x, y) => x + y, 0) / queueSorted.length).toFixed(1),
                    max: +queueSorted[queueSorted.length - 1]!.toFixed(1),
                  },
                }
              : {}),
            ...(pair ? { threads: perThread, batching: { gwa: batching(status), gwb: batching(statusB) } } : {}),
            ...(p
              ? {
                  peer: { srttMs: p.srttMs, bandwidthMbit: p.bandwidthMbit, pacingMbit: p.pacingMbit, retransmissions: p.retransmissions },
                  // Both directions' parity datagrams and copies (latency-sensitive flows): what the redundancy cost, and what it rebuilt.
                  redundant: {
                    datagrams: p.redundantDatagrams + (pb?.redundantDatagrams ?? 0),
                    bytes: p.redundantBytes + (pb?.redundantBytes ?? 0),
                    recovered: p.parityRecovered + (pb?.parityRecovered ?? 0),
                  },
                }
              : {}),
          })}\n`,
        );
      } finally {
        await pair?.stop();
        if (pair && NODE_ARGS.length)
          for (const [n, g] of [
            ['gwa', pair.gwa],
            ['gwb', pair.gwb],
          ] as const)
            writeFileSync(`/tmp/tpo-wan-quick-${n}.log`, g.stdoutLines.join('\n'));
        sink.endInput();
        await sink.stop(2_000);
        await emu.stop();
      }
    }
} finally {
  await wt.destroy();
}
