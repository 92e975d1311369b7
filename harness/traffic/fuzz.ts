/**
 * Hostile input for fuzz tests and the soak (issue 16: every listening
 * socket is a fuzz target).
 *
 * - `Prng` and the byte mutations (truncate, extend, flip bits, lie in a
 *   length field, splice) are pure and seeded: the same seed gives the same
 *   datagrams, so a failure names the seed that reproduces it.
 * - `hostileDatagrams` draws random, empty, truncated, oversized,
 *   bit-flipped, lying-length, spliced and replayed (exact copies of
 *   captured real traffic) datagrams from a corpus.
 * - `sendBounded` sends them with a count cap and a time cap, paced in
 *   bursts so the loopback receive buffers are not what is being tested.
 * - `startCaptureProxy` sits between two UDP peers, forwards both ways and
 *   keeps copies, for replay by an on-path attacker (`replay`).
 * - `udpDrops` reads the kernel's per-socket drop counters
 *   (/proc/net/udp{,6}), so a test can account for datagrams the kernel
 *   dropped before the application saw them.
 * - Hostile TCP connections and HTTP requests: `fuzz-stream.ts`.
 *
 * Traffic goes only where the caller points it: loopback or a namespace
 * the test created.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

// ---------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: small, fast, good enough to draw test inputs reproducibly. */
export class Prng {
  #s: number;
  constructor(readonly seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Integer in [min, max]. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    if (!xs.length) throw new RangeError('pick from an empty list');
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = (this.next() * 4294967296) >>> 0;
      out[i] = v;
      if (i + 1 < n) out[i + 1] = v >>> 8;
      if (i + 2 < n) out[i + 2] = v >>> 16;
      if (i + 3 < n) out[i + 3] = v >>> 24;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// Mutations (pure: each returns a new array, the input is not changed)

/** Values that break length and count fields: zero, one, off-by-one, sign bits, all ones. */
export const INTERESTING_U32 = [
  0, 1, 2, 7, 8, 15, 16, 0x7f, 0x80, 0xff, 0x100, 0x3ff, 0x400, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff,
] as const;

export function truncate(b: Uint8Array, rng: Prng): Uint8Array {
  return Uint8Array.from(b.subarray(0, b.length ? rng.int(b.length) : 0));
}

/** `b` followed by random bytes, up to `maxLength` in all. */
export function extend(b: Uint8Array, rng: Prng, maxLength: number): Uint8Array {
  const extra = Math.max(1, rng.range(1, Math.max(1, maxLength - b.length)));
  const out = new Uint8Array(Math.min(maxLength, b.length + extra));
  out.set(b.subarray(0, out.length));
  out.set(rng.bytes(out.length - Math.min(b.length, out.length)), Math.min(b.length, out.length));
  return out;
}

export function flipBits(b: Uint8Array, rng: Prng, flips = rng.range(1, 8)): Uint8Array {
  const out = Uint8Array.from(b);
  if (!out.length) return out;
  for (let i = 0; i < flips; i++) {
    const bit = rng.int(out.length * 8);
    out[bit >> 3]! ^= 1 << (bit & 7);
  }
  return out;
}

/**
 * Writes an interesting value into a 1, 2 or 4-byte field at a random offset
 * among the first `window` bytes (where headers and their length fields
 * are), big- or little-endian: a lying length or count.
 */
export function lie(b: Uint8Array, rng: Prng, window = 64): Uint8Array {
  const out = Uint8Array.from(b);
  if (!out.length) return out;
  const size = rng.pick([1, 2, 4] as const);
  const at = rng.int(Math.max(1, Math.min(window, out.length - size + 1)));
  const v = rng.chance(0.2) ? b.length + rng.range(-2, 2) : rng.pick(INTERESTING_U32);
  const dv = new DataView(out.buffer);
  const le = rng.chance(0.5);
  if (at + size > out.length) return out;
  if (size === 1) dv.setUint8(at, v & 0xff);
  else if (size === 2) dv.setUint16(at, v & 0xffff, le);
  else dv.setUint32(at, v >>> 0, le);
  return out;
}

/** The start of `a` and the end of `b`. */
export function splice(a: Uint8Array, b: Uint8Array, rng: Prng): Uint8Array {
  const head = a.subarray(0, rng.int(a.length + 1));
  const tail = b.subarray(rng.int(b.length + 1));
  const out = new Uint8Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out;
}

// ---------------------------------------------------------------------------
// Hostile datagrams

export const HOSTILE_KINDS = ['random', 'empty', 'truncated', 'oversized', 'bitflip', 'lying', 'spliced', 'prefixed', 'replayed'] as const;
export type HostileKind = (typeof HOSTILE_KINDS)[number];

export interface Hostile {
  readonly kind: HostileKind;
  readonly data: Uint8Array;
}

export interface HostileOptions {
  /** Real datagrams to mutate and replay (captured traffic, or valid examples). */
  readonly corpus?: readonly Uint8Array[];
  /**
   * Valid-looking starts (e.g. a protocol's version and kind bytes): a
   * 'prefixed' datagram is one of them followed by random bytes, so the
   * fuzz gets past the first checks.
   */
  readonly prefixes?: readonly Uint8Array[];
  /** Largest datagram drawn (default 65,507, the UDP maximum). */
  readonly maxSize?: number;
  /** Largest 'random' datagram (default 1,500). */
  readonly maxRandom?: number;
  /** Only these kinds (default: every kind the inputs allow). */
  readonly kinds?: readonly HostileKind[];
}

/** One hostile datagram; `replayed` is an exact copy of a corpus item. */
export function hostileDatagram(rng: Prng, o: HostileOptions = {}): Hostile {
  const corpus = o.corpus ?? [];
  const maxSize = o.maxSize ?? 65_507;
  const kinds = (o.kinds ?? HOSTILE_KINDS).filter((k) =>
    k === 'prefixed' ? (o.prefixes?.length ?? 0) > 0 : ['random', 'empty'].includes(k) || corpus.length > 0,
  );
  const kind = rng.pick(kinds);
  const base = () => rng.pick(corpus);
  switch (kind) {
    case 'random':
      return { kind, data: rng.bytes(rng.range(1, Math.min(maxSize, o.maxRandom ?? 1500))) };
    case 'empty':
      return { kind, data: new Uint8Array(0) };
    case 'truncated':
      return { kind, data: truncate(base(), rng) };
    case 'oversized': {
      const b = base();
      // Mostly just past the datagram (off by a little), sometimes up to the UDP maximum.
      const max = rng.chance(0.7) ? Math.min(maxSize, b.length + rng.range(1, 400)) : maxSize;
      return { kind, data: extend(b, rng, Math.max(b.length + 1, max)) };
    }
    case 'bitflip':
      return { kind, data: flipBits(base(), rng) };
    case 'lying':
      return { kind, data: lie(base(), rng) };
    case 'spliced':
      return { kind, data: splice(base(), base(), rng) };
    case 'prefixed': {
      const p = rng.pick(o.prefixes!);
      const tail = rng.bytes(rng.range(0, Math.min(maxSize - p.length, o.maxRandom ?? 1500)));
      const out = new Uint8Array(p.length + tail.length);
      out.set(p);
      out.set(tail, p.length);
      return { kind, data: out };
    }
    case 'replayed':
      return { kind, data: Uint8Array.from(base()) };
  }
}

export function* hostileDatagrams(seed: number, count: number, o: HostileOptions = {}): Generator<Hostile> {
  const rng = new Prng(seed);
  for (let i = 0; i < count; i++) yield hostileDatagram(rng, o);
}

// ---------------------------------------------------------------------------
// Sending, bounded

export interface SendLimits {
  /** At most this many datagrams. */
  readonly maxCount: number;
  /** And for at most this long (ms). */
  readonly maxMs: number;
  /** Datagrams per burst before a pause (default 32). */
  readonly burst?: number;
  /** Pause between bursts (ms, default 1): the receiver's buffer is not what is tested. */
  readonly gapMs?: number;
}

export interface SendReport {
  sent: number;
  bytes: number;
  /** Datagrams the local stack refused (EMSGSIZE, ...): never reached the target. */
  refused: number;
  byKind: Record<string, number>;
  elapsedMs: number;
  /** Every datagram that left, in order (for accounting and replay), when `keep` was asked. */
  kept: Uint8Array[];
}

export interface UdpTarget {
  readonly address: string;
  readonly port: number;
}

function sendOne(s: dgram.Socket, data: Uint8Array, to: UdpTarget): Promise<Error | null> {
  return new Promise((resolve) => s.send(data, to.port, to.address, (err) => resolve(err ?? null)));
}

/**
 * Sends datagrams from `items` (each from one of `sockets`, round robin)
 * to `to`, stopping at `maxCount` or `maxMs`, whichever comes first.
 */
export async function sendBounded(
  sockets: dgram.Socket | readonly dgram.Socket[],
  to: UdpTarget,
  items: Iterable<Hostile | Uint8Array>,
  limits: SendLimits & { keep?: boolean },
): Promise<SendReport> {
  const socks = Array.isArray(sockets) ? sockets : [sockets as dgram.Socket];
  const burst = limits.burst ?? 32;
  const t0 = performance.now();
  const r: SendReport = { sent: 0, bytes: 0, refused: 0, byKind: {}, elapsedMs: 0, kept: [] };
  let i = 0;
  for (const item of items) {
    if (r.sent + r.refused >= limits.maxCount || performance.now() - t0 > limits.maxMs) break;
    const h: Hostile = item instanceof Uint8Array ? { kind: 'replayed', data: item } : item;
    const err = await sendOne(socks[i++ % socks.length]!, h.data, to);
    if (err) r.refused++;
    else {
      r.sent++;
      r.bytes += h.data.length;
      r.byKind[h.kind] = (r.byKind[h.kind] ?? 0) + 1;
      if (limits.keep) r.kept.push(h.data);
    }
    if (i % burst === 0) await sleep(limits.gapMs ?? 1);
  }
  r.elapsedMs = performance.now() - t0;
  return r;
}

/** `n` UDP sockets on distinct ephemeral ports of `address` (a flood from many source ports). */
export async function openSources(n: number, address = '127.0.0.1'): Promise<{ sockets: dgram.Socket[]; close(): Promise<void> }> {
  const sockets: dgram.Socket[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
      s.on('error', () => {}); // ICMP errors for a flood's datagrams are expected
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(0, address, () => {
          s.off('error', reject);
          resolve();
        });
      });
      sockets.push(s);
    }
  } catch (err) {
    for (const s of sockets) s.close();
    throw err;
  }
  return { sockets, close: () => Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined) };
}

// ---------------------------------------------------------------------------
// Capture and replay

export interface Captured {
  /** 'out': from a client towards the target; 'back': from the target to the client. */
  readonly dir: 'out' | 'back';
  readonly data: Uint8Array;
  readonly at: number;
}

export interface CaptureProxy extends UdpTarget {
  readonly captured: readonly Captured[];
  /** Sends datagrams from the proxy's own socket (the address the target knows as its peer). */
  inject(data: Uint8Array, to: UdpTarget): Promise<void>;
  /** The last client seen (where 'back' datagrams go). */
  readonly client: UdpTarget | undefined;
  close(): Promise<void>;
}

/**
 * A UDP proxy on `address`: datagrams from anyone but `target` go to
 * `target`; datagrams from `target` go to the last client. It keeps
 * copies of the first `max` datagrams each way (the capture).
 */
export async function startCaptureProxy(target: UdpTarget, opts: { address?: string; max?: number } = {}): Promise<CaptureProxy> {
  const address = opts.address ?? '127.0.0.1';
  const max = opts.max ?? 5000;
  const s = dgram.createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  s.on('error', () => {});
  await new Promise<void>((resolve) => s.bind(0, address, () => resolve()));
  const captured: Captured[] = [];
  let client: UdpTarget | undefined;
  let outCount = 0;
  let backCount = 0;
  s.on('message', (msg, rinfo) => {
    const fromTarget = rinfo.port === target.port && rinfo.address === target.address;
    if (fromTarget) {
      if (backCount++ < max) captured.push({ dir: 'back', data: Uint8Array.from(msg), at: performance.now() });
      if (client) s.send(msg, client.port, client.address);
    } else {
      client = { address: rinfo.address, port: rinfo.port };
      if (outCount++ < max) captured.push({ dir: 'out', data: Uint8Array.from(msg), at: performance.now() });
      s.send(msg, target.port, target.address);
    }
  });
  return {
    address,
    port: s.address().port,
    captured,
    get client() {
      return client;
    },
    inject: (data, to) => new Promise<void>((resolve) => s.send(data, to.port, to.address, () => resolve())),
    close: () => new Promise<void>((r) => s.close(() => r())),
  };
}

// ---------------------------------------------------------------------------
// Kernel drop counters

/**
 * Datagrams the kernel dropped at the UDP sockets bound to local `port`
 * (receive buffer full, and the like), from /proc/net/udp and udp6 of the
 * caller's network namespace: drops the application could never count.
 */
export function udpDrops(port: number): number {
  let total = 0;
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 13) continue;
      if (cols[1]!.split(':')[1] !== hexPort) continue;
      total += Number(cols[cols.length - 1]) || 0;
    }
  }
  return total;
}
