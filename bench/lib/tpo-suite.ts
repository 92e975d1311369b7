/**
 * The TPO data mover bench (issue #6): goodput of two data movers through
 * the link emulator at 50 Mbit/s and 100 ms RTT with 0, 1 and 3 % random
 * loss, wire bytes per delivered byte and CPU per delivered MB; small
 * messages through the packet driver (datagrams per message); compression
 * of text and random data. Loopback only: the movers run in one process
 * (bench/tools/tpo-load.ts) pinned to CPU 0, the emulator in another on
 * CPU 1.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { PacketDriver } from '../../src/tpo/protocol/packet-driver.js';
import { spread } from './stats.js';

export const TPO_LOSSES = [0, 0.01, 0.03] as const;
/** The movers' datagram ports (src/tpo/io/datagram-port.ts): batched (the default) and node:dgram, for the CPU comparison. */
export const TPO_IOS = ['batched', 'portable'] as const;
export type TpoIo = (typeof TPO_IOS)[number];

export interface TpoBulkTrial {
  repeat: number;
  loss: number;
  /** Absent in results from before the batched ports: those were node:dgram. */
  io?: TpoIo;
  goodputMbit: number;
  ofLink: number;
  /** Goodput after the first 2 s (startup), as a share of the link. */
  steadyOfLink: number;
  wirePerDelivered: number;
  cpuSPerMB: number;
  retransmissions: number;
  seconds: number;
  /** The same transfer again on the session the first one started (what later flows see). */
  established?: { ofLink: number; goodputMbit: number; wirePerDelivered: number; cpuSPerMB: number };
  /** Datagrams per send call (A's port) and per receive hand-over (B's port; 0 for node:dgram, which has none). */
  datagramsPerSendCall?: number;
  datagramsPerReceiveBatch?: number;
}

export interface TpoChattyTrial {
  repeat: number;
  compression: 'auto' | 'none';
  messages: number;
  datagrams: number;
  datagramsPerMessage: number;
}

export interface TpoCompression {
  corpus: string;
  rawBytes: number;
  wireBytes: number;
  ratio: number;
}

export interface TpoResults {
  bulk: TpoBulkTrial[];
  chatty: TpoChattyTrial[];
  compression: TpoCompression[];
}

function load(args: string[], timeoutMs: number): Record<string, number> {
  const out = execFileSync('taskset', ['-c', '0', process.execPath, '--import', 'tsx', 'bench/tools/tpo-load.ts', ...args, '--emu-cpu', '1'], {
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  const line = out
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop();
  if (!line) throw new Error(`tpo-load printed no result: ${out.slice(-500)}`);
  return JSON.parse(line) as Record<string, number>;
}

export function runTpoBulk(repeat: number, loss: number, mb: number, io: TpoIo = 'batched'): TpoBulkTrial {
  const r = load(['--mode', 'bulk', '--mb', String(mb), '--loss', String(loss), '--rate-mbit', '50', '--rtt-ms', '100', '--io', io], 300_000);
  const e = (r as unknown as { established?: TpoBulkTrial['established'] }).established;
  return {
    repeat,
    loss,
    io,
    datagramsPerSendCall: r.datagramsSentA! / r.sendCallsA!,
    datagramsPerReceiveBatch: r.receiveBatchesB ? r.datagramsReceivedB! / r.receiveBatchesB : 0,
    goodputMbit: r.goodputMbit!,
    ofLink: r.ofLink!,
    steadyOfLink: r.steadyOfLink!,
    wirePerDelivered: r.wirePerDelivered!,
    cpuSPerMB: r.cpuSPerMB!,
    retransmissions: r.retransmissions!,
    seconds: r.seconds!,
    ...(e ? { established: { ofLink: e.ofLink, goodputMbit: e.goodputMbit, wirePerDelivered: e.wirePerDelivered, cpuSPerMB: e.cpuSPerMB } } : {}),
  };
}

export function runTpoChatty(repeat: number, compression: 'auto' | 'none'): TpoChattyTrial {
  const r = load(['--mode', 'chatty', '--msgs-per-s', '20000', '--seconds', '2', '--size', '100', '--rtt-ms', '100', '--compression', compression], 60_000);
  return { repeat, compression, messages: r.messages!, datagrams: r.datagrams!, datagramsPerMessage: r.datagramsPerMessage! };
}

/**
 * Compression by the packet driver's default (brotli where it pays), on
 * real text (TypeScript's own lib.es5.d.ts from node_modules, English and
 * code) and on random bytes, in 1,000-byte messages.
 */
export function runTpoCompression(): TpoCompression[] {
  const text = readFileSync('node_modules/typescript/lib/lib.es5.d.ts');
  const out: TpoCompression[] = [];
  for (const [corpus, data] of [
    ['text (typescript/lib/lib.es5.d.ts)', text],
    ['random bytes', randomBytes(text.length)],
  ] as const) {
    let wire = 0;
    let raw = 0;
    const driver = new PacketDriver((b) => {
      wire += b.bytes.length;
      raw += b.rawBytes;
    });
    for (let i = 0; i * 1000 < data.length; i++) {
      const chunk = data.subarray(i * 1000, (i + 1) * 1000);
      driver.push(0, {
        header: {
          function: 'data',
          protocol: 'tcp',
          sequence: i,
          src: { address: '10.0.0.1', port: 1000 },
          dst: { address: '10.0.0.2', port: 80 },
          status: 0,
          dataLength: chunk.length,
        },
        data: chunk,
      });
    }
    driver.close();
    // Against the raw messages (headers included): what compression does, framing aside.
    out.push({ corpus, rawBytes: raw, wireBytes: wire, ratio: wire / raw });
  }
  return out;
}

const est = (t: TpoBulkTrial[]) => {
  const e = spread(t.filter((x) => x.established).map((x) => x.established!.ofLink));
  return e ? `${pct(e.median)} (${pct(e.min)}–${pct(e.max)})` : '–';
};
const pct = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)} %`);
const fx = (x: number | undefined, d = 3) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));

export function tpoMarkdown(r: TpoResults): string {
  if (!r.bulk.length && !r.chatty.length && !r.compression.length) return '';
  const out: string[] = ['## TPO data mover (issue #6)', ''];
  out.push(
    "Two data movers on loopback (one process, CPU 0) through the link emulator (its own process, CPU 1): 50 Mbit/s bottleneck with a 100 ms queue, 100 ms RTT, random loss both ways. Random 16 KiB driver buffers, 100 MB per trial (about 17 s; startup, about 1 s to reach the link rate from 1 Mbit/s, is in the whole-transfer figure), then the same 100 MB again on the established session: a gateway pair's session outlives the flows it carries, so that is what later flows see. Keys are given (no handshake); TCP comparisons are issue #7's.",
  );
  out.push('');
  out.push(
    "I/O: the movers' datagram ports (src/tpo/io/datagram-port.ts). batched: sends of one JS task in one sendmmsg (equal-size runs as UDP GSO messages), recvmmsg in a receive thread handing over whole batches; portable: node:dgram, one call per datagram. Both kinds run in the same bench run, interleaved. CPU is the whole mover process (both movers and the receive threads), not the emulator.",
  );
  out.push('');
  out.push(
    '| loss | I/O | goodput, new session (median) | min–max | of the link, whole transfer | of the link after the first 2 s | established session: of the link (min–max) | wire bytes ÷ delivered | CPU s per delivered MB | retransmissions | datagrams per send call | per receive batch | n |',
  );
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const ioOf = (t: TpoBulkTrial): TpoIo => t.io ?? 'portable';
  for (const loss of TPO_LOSSES)
    for (const io of TPO_IOS) {
      const t = r.bulk.filter((x) => x.loss === loss && ioOf(x) === io);
      if (!t.length) continue;
      const g = spread(t.map((x) => x.goodputMbit));
      const perCall = spread(t.map((x) => x.datagramsPerSendCall ?? NaN).filter(Number.isFinite))?.median;
      const perBatch = spread(t.map((x) => x.datagramsPerReceiveBatch ?? NaN).filter((x) => x > 0))?.median;
      out.push(
        `| ${(loss * 100).toFixed(0)} % | ${io} | ${fx(g?.median, 1)} Mbit/s | ${fx(g?.min, 1)}–${fx(g?.max, 1)} | ${pct(spread(t.map((x) => x.ofLink))?.median)} | ${pct(spread(t.map((x) => x.steadyOfLink))?.median)} | ${est(t)} | ${fx(spread(t.map((x) => x.wirePerDelivered))?.median)} | ${fx(spread(t.map((x) => x.cpuSPerMB))?.median, 4)} | ${spread(t.map((x) => x.retransmissions))?.median ?? '–'} | ${fx(perCall, 1)} | ${fx(perBatch, 1)} | ${t.length} |`,
      );
    }
  out.push('');
  const cpuRatio = TPO_LOSSES.map((loss) => {
    const m = (io: TpoIo) => spread(r.bulk.filter((x) => x.loss === loss && ioOf(x) === io).map((x) => x.cpuSPerMB))?.median;
    const b = m('batched');
    const p = m('portable');
    return b !== undefined && p !== undefined ? `${fx(b / p, 2)} at ${(loss * 100).toFixed(0)} % loss` : undefined;
  }).filter((x) => x !== undefined);
  if (cpuRatio.length) {
    out.push(`CPU per delivered MB, batched ÷ portable (medians): ${cpuRatio.join(', ')}.`);
    out.push('');
  }
  for (const c of ['auto', 'none'] as const) {
    const trials = r.chatty.filter((x) => x.compression === c);
    if (!trials.length) continue;
    const d = spread(trials.map((x) => x.datagramsPerMessage));
    out.push(
      `Small messages, compression ${c === 'auto' ? 'on (the default; only the 28-byte message headers compress, the payloads are random)' : 'off'}: 100-byte messages at 20,000/s for 2 s, each with its own random payload, through the packet driver (2 ms deadline) and the data mover: **${fx(d?.median, 4)}** datagrams per message (min–max ${fx(d?.min, 4)}–${fx(d?.max, 4)}, n ${trials.length}).`,
    );
    out.push('');
  }
  if (r.compression.length) {
    out.push('| compression corpus | raw bytes | carried bytes | carried ÷ raw |');
    out.push('| --- | --- | --- | --- |');
    for (const c of r.compression) out.push(`| ${c.corpus} | ${c.rawBytes.toLocaleString('en')} | ${c.wireBytes.toLocaleString('en')} | ${fx(c.ratio, 4)} |`);
    out.push('');
  }
  const chattyMed = (c: 'auto' | 'none') => fx(spread(r.chatty.filter((x) => x.compression === c).map((x) => x.datagramsPerMessage))?.median, 4);
  // Targets are judged on the default I/O (batched where the run has it).
  const targetIo: TpoIo = r.bulk.some((x) => ioOf(x) === 'batched') ? 'batched' : 'portable';
  const med = (loss: number, f: (t: TpoBulkTrial) => number) => spread(r.bulk.filter((x) => x.loss === loss && ioOf(x) === targetIo).map(f))?.median;
  const random = r.compression.find((c) => c.corpus === 'random bytes');
  out.push(`| target | goal | measured (medians, ${targetIo} I/O) |`);
  out.push('| --- | --- | --- |');
  const estMed = (loss: number) =>
    spread(r.bulk.filter((x) => x.loss === loss && ioOf(x) === targetIo && x.established).map((x) => x.established!.ofLink))?.median;
  out.push(
    `| goodput at 1 % loss | ≥ 90 % of the link | ${pct(estMed(0.01))} established session; new session ${pct(med(0.01, (t) => t.ofLink))} whole transfer, ${pct(med(0.01, (t) => t.steadyOfLink))} after the first 2 s |`,
  );
  out.push(
    `| goodput at 3 % loss | ≥ 85 % of the link | ${pct(estMed(0.03))} established session; new session ${pct(med(0.03, (t) => t.ofLink))} whole transfer, ${pct(med(0.03, (t) => t.steadyOfLink))} after the first 2 s |`,
  );
  out.push(`| wire bytes at 1 % loss | ≤ 1.1× delivered | ${fx(med(0.01, (t) => t.wirePerDelivered))}× |`);
  out.push(`| 100-byte messages | ≤ 0.1 datagrams per message | ${chattyMed('auto')} with the default compression; ${chattyMed('none')} without |`);
  out.push(`| random data through compression | grows ≤ 1 % | ${random ? `${pct(random.ratio - 1)} (routing headers only)` : '–'} |`);
  out.push('');
  return out.join('\n');
}
