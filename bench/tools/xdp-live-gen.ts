/**
 * Packet generator for the xdp suite (bench/lib/xdp-suite.ts) where the
 * kernel's pktgen is not available: BPF_PROG_TEST_RUN in live-frames mode
 * (src/sys/bpf-test-run.ts) with a two-instruction XDP program that returns
 * XDP_TX, so the kernel transmits one UDP frame template out of --ifname
 * over and over, without a socket, a route lookup or an skb per packet
 * (the way xdp-trafficgen does). Out of a veth that means straight into the
 * peer's receive ring (the peer needs NAPI: GRO or an XDP program on it).
 * One core does several million frames a second, more than a relay can
 * take, so the relay (or the ring in front of it) is what limits.
 *
 *   --ifname IF --dst-mac MAC --src IP --to IP:PORT --size BYTES --duration S
 *   [--rate PPS]  paced: frames in runs of --chunk, sleeping until each run is
 *                 due (default 0: as fast as the kernel goes)
 *   [--chunk N]   frames per system call (default 100000; paced: rate / 1000)
 *
 * Prints one JSON line, as the other generators do:
 *   {"sent":N,"errors":0,"elapsedS":S,"achievedPps":R,"kernelNsPerFrame":N}
 * where sent counts frames the program ran on (a frame the veth found no
 * room for in the peer's ring is dropped there and counted in that
 * veth's statistics, not here).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BPF_PROG_TYPE_XDP, BPF_XDP, closeFd, progLoad } from '../../src/sys/bpf.js';
import { LiveFrameRunner } from '../../src/sys/bpf-test-run.js';

const { values } = parseArgs({
  options: {
    ifname: { type: 'string' },
    'dst-mac': { type: 'string' },
    src: { type: 'string' },
    to: { type: 'string' },
    size: { type: 'string', default: '64' },
    duration: { type: 'string', default: '1' },
    chunk: { type: 'string', default: '100000' },
    rate: { type: 'string', default: '0' },
  },
});

function fail(msg: string): never {
  process.stderr.write(`xdp-live-gen: ${msg}\n`);
  process.exit(2);
}

const ifname = values.ifname ?? fail('--ifname is required');
const size = Number(values.size);
const duration = Number(values.duration);
const rate = Number(values.rate);
const chunk = rate > 0 ? Math.max(1, Math.round(rate / 1000)) : Number(values.chunk);
const [dstIp, dstPort] = (values.to ?? fail('--to is required')).split(':');
if (!(size >= 1 && size <= 1472) || !(duration > 0) || !(chunk >= 1) || !dstPort) fail('bad --size, --duration, --chunk or --to');

const mac = (text: string): number[] => {
  const b = text
    .trim()
    .split(':')
    .map((h) => parseInt(h, 16));
  if (b.length !== 6 || b.some((x) => !(x >= 0 && x <= 255))) fail(`bad MAC ${text}`);
  return b;
};
const ipv4 = (text: string): number[] => {
  const b = text.split('.').map(Number);
  if (b.length !== 4 || b.some((x) => !(Number.isInteger(x) && x >= 0 && x <= 255))) fail(`bad IPv4 address ${text}`);
  return b;
};

/** Ones' complement sum of 16-bit words, folded and inverted. */
function checksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff || 0xffff;
}

function buildFrame(): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + size);
  const v = new DataView(f.buffer);
  f.set(mac(values['dst-mac'] ?? fail('--dst-mac is required')), 0);
  f.set(mac(readFileSync(`/sys/class/net/${ifname}/address`, 'utf8')), 6);
  v.setUint16(12, 0x0800);
  const src = ipv4(values.src ?? fail('--src is required'));
  const dst = ipv4(dstIp!);
  v.setUint8(14, 0x45);
  v.setUint16(16, 20 + 8 + size);
  v.setUint16(20, 0x4000); // DF
  v.setUint8(22, 64);
  v.setUint8(23, 17);
  f.set(src, 26);
  f.set(dst, 30);
  v.setUint16(24, checksum(f.subarray(14, 34)));
  v.setUint16(34, 40000);
  v.setUint16(36, Number(dstPort));
  v.setUint16(38, 8 + size);
  // TS-like payload (a sync byte every 188 bytes), as bench/tools/udp-gen.ts sends.
  for (let i = 0; i < size; i += 188) f[42 + i] = 0x47;
  const pseudo = [...src, ...dst].reduce((s, _, i, a) => (i % 2 ? s + ((a[i - 1]! << 8) | a[i]!) : s), 0) + 17 + 8 + size;
  v.setUint16(40, checksum(f.subarray(34), pseudo));
  return f;
}

/**
 * The program: write the template's 42 header bytes into the frame, then
 * XDP_TX. Live frames are rebuilt from the template only when the kernel
 * allocates their page; a page that comes back from the receiver (the
 * relay rewrites headers in place at XDP) is reused as it is, so without
 * this the relay would be sent its own output.
 */
function txProgram(f: Uint8Array): Uint8Array {
  const out: number[] = [];
  const insn = (code: number, dst: number, src: number, off: number, imm: number): void => {
    const b = new Uint8Array(8);
    const v = new DataView(b.buffer);
    b[0] = code;
    b[1] = (src << 4) | dst;
    v.setInt16(2, off, true);
    v.setInt32(4, imm, true);
    out.push(...b);
  };
  const hdr = new DataView(f.buffer, f.byteOffset, 42);
  insn(0x61, 2, 1, 0, 0); // r2 = ctx->data
  insn(0x61, 3, 1, 4, 0); // r3 = ctx->data_end
  insn(0xbf, 4, 2, 0, 0); // r4 = r2
  insn(0x07, 4, 0, 0, 42); // r4 += 42
  insn(0x2d, 4, 3, 13, 0); // if r4 > r3 goto drop (10 stw + 1 sth + 2 below)
  for (let o = 0; o < 40; o += 4) insn(0x62, 2, 0, o, hdr.getInt32(o, true)); // *(u32 *)(r2 + o) = template
  insn(0x6a, 2, 0, 40, hdr.getInt16(40, true)); // *(u16 *)(r2 + 40) = template
  insn(0xb7, 0, 0, 0, 3); // r0 = XDP_TX
  insn(0x95, 0, 0, 0, 0); // exit
  insn(0xb7, 0, 0, 0, 1); // drop: r0 = XDP_DROP
  insn(0x95, 0, 0, 0, 0);
  return new Uint8Array(out);
}

const ifindex = Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim());
const frame = buildFrame();
const prog = progLoad({ type: BPF_PROG_TYPE_XDP, insns: txProgram(frame), license: 'Dual MIT/GPL', name: 'bench_xdp_tx', expectedAttachType: BPF_XDP });
const runner = new LiveFrameRunner({ progFd: prog, frame, ifindex, repeat: chunk, batchSize: 64 });

let sent = 0;
let nsSum = 0;
let calls = 0;
const t0 = performance.now();
try {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  while (performance.now() - t0 < duration * 1000) {
    if (rate > 0) {
      const aheadMs = ((sent + chunk) / rate) * 1000 - (performance.now() - t0);
      if (aheadMs > 0) Atomics.wait(sleeper, 0, 0, aheadMs);
    }
    nsSum += runner.run();
    calls++;
    sent += chunk;
  }
} catch (err) {
  fail((err as Error).message);
} finally {
  closeFd(prog);
}
const elapsedS = (performance.now() - t0) / 1000;
process.stdout.write(
  `${JSON.stringify({ sent, errors: 0, elapsedS: Number(elapsedS.toFixed(4)), achievedPps: Math.round(sent / elapsedS), kernelNsPerFrame: Math.round(nsSum / Math.max(1, calls)) })}\n`,
);
