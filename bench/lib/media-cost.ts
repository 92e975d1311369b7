/**
 * Media suite, part 1 (issue 20): what monitoring costs the relay. One
 * trial = one `sluice relay` process (CLI, loopback, one tier, policy
 * `payload` mpegts or rtp, monitor on or off) relaying a fixed offered rate
 * of 1316-byte (TS) or 1328-byte (RTP + TS) datagrams to SUBSCRIBERS local
 * sockets. Measured: CPU time of the relay process (all its threads, from
 * /proc/<pid>/task/<tid>/schedstat, ns resolution) per offered datagram
 * over the window after a warm-up — not throughput, so other processes on
 * the host weigh less. On the kernel tier the relaying itself runs in
 * softirq and is not in that figure: what remains is the tap's copy
 * (received by the main thread) and the monitor.
 */
import dgram from 'node:dgram';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');

export const MEDIA_TIERS = ['kernel', 'batched', 'portable'] as const;
export const MEDIA_PAYLOADS = ['mpegts', 'rtp'] as const;
export type MediaTier = (typeof MEDIA_TIERS)[number];
export type MediaPayload = (typeof MEDIA_PAYLOADS)[number];

export interface CostSpec {
  tier: MediaTier;
  payload: MediaPayload;
  monitor: boolean;
  repeat: number;
  rate: number;
  subscribers: number;
  warmupS: number;
  seconds: number;
  port: number;
}

export interface CostTrial extends Omit<CostSpec, 'port'> {
  offered: number;
  /** datagrams the first subscriber got of those offered in the window (a sanity check: the CPU figure is per offered datagram) */
  delivered: number;
  cpuS: number;
  /** µs of relay CPU per offered datagram */
  usPerDatagram: number;
}

/** CPU seconds of every thread of `pid` (schedstat run time). */
export function threadCpuSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* the thread exited between readdir and read */
    }
  }
  return ns / 1e9;
}

/** A valid stream: TS packets on PID 0x100 with a running continuity counter, optionally in RTP (PT 33). */
function makeStream(payload: MediaPayload): () => Buffer {
  let cc = 0;
  let seq = 0;
  let ts = 0;
  return () => {
    const rtp = payload === 'rtp' ? 12 : 0;
    const b = Buffer.alloc(rtp + 1316, 0xff);
    if (rtp) {
      b[0] = 0x80;
      b[1] = 33;
      b.writeUInt16BE(seq++ & 0xffff, 2);
      b.writeUInt32BE((ts += 90) >>> 0, 4);
      b.writeUInt32BE(0x5105ce, 8);
    }
    for (let i = 0; i < 7; i++) {
      const o = rtp + i * 188;
      b[o] = 0x47;
      b[o + 1] = 0x01;
      b[o + 2] = 0x00;
      b[o + 3] = 0x10 | (cc++ & 0x0f);
    }
    return b;
  };
}

function waitForLine(child: ChildProcess, re: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`relay not ready in ${timeoutMs} ms: ${text.slice(-300).trim()}`)), timeoutMs);
    const on = (d: Buffer) => {
      text += d.toString();
      if (re.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr!.on('data', on);
    child.stdout!.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited ${code}: ${text.slice(-300).trim()}`));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runCostTrial(spec: CostSpec): Promise<CostTrial> {
  const sinks = await Promise.all(
    Array.from({ length: spec.subscribers }, async () => {
      const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
      let n = 0;
      s.on('message', () => n++);
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      return { s, count: () => n };
    }),
  );
  const args = ['--import', 'tsx', CLI, 'relay', '--listen', `udp://127.0.0.1:${spec.port}`, '--allow', 'any', '--tier', spec.tier];
  args.push('--payload', spec.payload, ...(spec.monitor ? [] : ['--no-monitor']));
  for (const k of sinks) args.push('--to', `udp://127.0.0.1:${k.s.address().port}`);
  const relay = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const tx = dgram.createSocket('udp4');
  try {
    await waitForLine(relay, /running; /, 60_000);
    const next = makeStream(spec.payload);
    const send = () => tx.send(next(), spec.port, '127.0.0.1');
    // Paced by a 5 ms timer against the wall clock: RATE per second on average, in small bursts.
    let sent = 0;
    const t0 = performance.now();
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * spec.rate);
      while (sent < due) {
        send();
        sent++;
      }
    }, 5);
    try {
      await sleep(spec.warmupS * 1000);
      const cpu0 = threadCpuSeconds(relay.pid!);
      const sent0 = sent;
      const got0 = sinks[0]!.count();
      await sleep(spec.seconds * 1000);
      const cpuS = threadCpuSeconds(relay.pid!) - cpu0;
      const offered = sent - sent0;
      // Stop offering, then let the window's last datagrams arrive before counting them.
      clearInterval(timer);
      await sleep(100);
      const delivered = sinks[0]!.count() - got0;
      const { port: _port, ...rest } = spec;
      return { ...rest, offered, delivered, cpuS, usPerDatagram: (cpuS / offered) * 1e6 };
    } finally {
      clearInterval(timer);
    }
  } finally {
    tx.close();
    relay.kill('SIGTERM');
    await Promise.race([new Promise((r) => relay.once('exit', r)), sleep(5_000)]);
    if (relay.exitCode === null) relay.kill('SIGKILL');
    for (const k of sinks) k.s.close();
  }
}
