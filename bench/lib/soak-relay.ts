/**
 * One relay under soak: `sluice relay --tier T` (a real CLI process)
 * replicating an MPEG-TS stream to two subscribers, while hostile
 * datagrams hit its listen socket.
 *
 * Real traffic: numbered 7-packet TS datagrams, each byte of which is
 * known from its number, so a subscriber checks every datagram exactly.
 * Fuzz: random, truncated, oversized, bit-flipped, lying-length, spliced
 * and replayed datagrams from the allowed source (those that are valid
 * TS are relayed, and may arrive: their hashes are kept) and from a
 * stranger; once a minute a flood from 128 source ports.
 */
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import { Prng, hostileDatagram, udpDrops, type HostileKind } from '../../harness/traffic/fuzz.js';
import { SoakProcess } from './soak-procs.js';

const TS = 188;
const SIZE = 7 * TS;

export interface RelayTraffic {
  /** Real datagrams per second. */
  readonly realPps: number;
  /** Hostile datagrams per second (allowed source and stranger together). */
  readonly fuzzPps: number;
}

export interface SubscriberCheck {
  port: number;
  unique: number;
  duplicates: number;
  corrupt: number;
  corruptSamples: string[];
  /** Relayed fuzz datagrams that arrived (expected: valid TS from the allowed source). */
  fuzzArrived: number;
  missing: number;
  /** Datagrams the kernel dropped at this subscriber's socket (from /proc/net/udp). */
  kernelDrops: number;
}

export interface RelayResult {
  name: string;
  tier: string;
  listenPort: number;
  real: { sent: number; sendErrors: number; subscribers: SubscriberCheck[] };
  fuzz: { allowed: number; stranger: number; flood: number; replayed: number; relayable: number; byKind: Record<string, number> };
  /** Datagrams the kernel dropped at the listen socket. */
  listenKernelDrops: number;
  /** Datagrams some relay sent back to a sender (must be 0). */
  reflected: number;
  /** The relay's counters at exit ('final' event), else the last periodic ones. */
  stats: Record<string, unknown> | undefined;
  /** Missing real datagrams no counter explains (must be 0). */
  unexplained: number;
}

const TEMPLATE = (() => {
  const t = new Prng(0x50a1).bytes(SIZE);
  for (let i = 0; i < 7; i++) {
    t[i * TS] = 0x47;
    t[i * TS + 1] = 0x01;
    t[i * TS + 2] = 0x00;
  }
  return t;
})();

/** Real datagram `seq`: the template with the number (and a continuity counter) in every packet. */
export function realDatagram(seq: number, out = new Uint8Array(SIZE)): Uint8Array {
  out.set(TEMPLATE);
  const v = new DataView(out.buffer, out.byteOffset, SIZE);
  for (let i = 0; i < 7; i++) {
    out[i * TS + 3] = 0x10 | ((seq * 7 + i) & 0x0f);
    v.setUint32(i * TS + 4, seq >>> 0);
  }
  return out;
}

function isTs(d: Uint8Array, max: number): boolean {
  if (d.length === 0 || d.length > max || d.length % TS) return false;
  for (let i = 0; i < d.length; i += TS) if (d[i] !== 0x47) return false;
  return true;
}

const hash = (b: Uint8Array) => createHash('sha1').update(b).digest('base64');

async function udp(address: string, onMessage?: (m: Buffer) => void): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  s.on('error', () => {});
  if (onMessage) s.on('message', onMessage);
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return s;
}

async function freePort(): Promise<number> {
  const s = await udp('127.0.0.1');
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

export class RelayTarget {
  readonly proc: SoakProcess;
  #stats: Record<string, unknown> | undefined;
  #final: Record<string, unknown> | undefined;
  #seq = 0;
  #sendErrors = 0;
  readonly #seen: Uint8Array[];
  readonly #subs: SubscriberCheck[];
  readonly #relayable = new Set<string>();
  readonly #recent: Uint8Array[] = [];
  readonly #fuzz = { allowed: 0, stranger: 0, flood: 0, replayed: 0, relayable: 0, byKind: {} as Record<string, number> };
  #reflected = 0;
  #timers: NodeJS.Timeout[] = [];
  readonly #rng: Prng;
  #listenDrops0 = 0;

  private constructor(
    readonly tier: string,
    readonly listenPort: number,
    proc: SoakProcess,
    readonly sockets: { real: dgram.Socket; allowed: dgram.Socket; stranger: dgram.Socket; flood: dgram.Socket[]; subs: dgram.Socket[] },
    capacity: number,
    seed: number,
  ) {
    this.proc = proc;
    this.#rng = new Prng(seed);
    this.#seen = sockets.subs.map(() => new Uint8Array(capacity));
    this.#subs = sockets.subs.map((s) => ({
      port: s.address().port,
      unique: 0,
      duplicates: 0,
      corrupt: 0,
      corruptSamples: [],
      fuzzArrived: 0,
      missing: 0,
      kernelDrops: 0,
    }));
    sockets.subs.forEach((s, i) => s.on('message', (m) => this.#check(i, m)));
    for (const s of [sockets.real, sockets.allowed, sockets.stranger, ...sockets.flood]) s.on('message', () => this.#reflected++);
    proc.onLine((line) => {
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (o.event === 'stats') this.#stats = o;
        if (o.event === 'final') this.#final = o;
      } catch {
        // not JSON
      }
    });
  }

  /** Starts the relay process and its sockets; resolves once it is ready. */
  static async start(tier: string, t0: number, o: { seed: number; capacity: number }): Promise<RelayTarget> {
    const listenPort = await freePort();
    const subs = [await udp('127.0.0.1'), await udp('127.0.0.1')];
    const args = [
      'relay',
      '--tier',
      tier,
      '--name',
      `soak-${tier}`,
      '--listen',
      `udp://127.0.0.1:${listenPort}`,
      ...subs.flatMap((s) => ['--to', `udp://127.0.0.1:${s.address().port}`]),
      '--allow',
      '127.0.0.1/32',
      '--payload',
      'mpegts',
      '--max-datagram',
      String(SIZE),
      '--json',
      '--stats-interval',
      '5',
    ];
    const proc = SoakProcess.start(`relay ${tier}`, args, t0);
    try {
      await proc.waitForEvent('ready', 30_000);
    } catch (err) {
      for (const s of subs) s.close();
      throw err;
    }
    const flood: dgram.Socket[] = [];
    for (let i = 0; i < 128; i++) flood.push(await udp('127.0.0.3'));
    const t = new RelayTarget(
      tier,
      listenPort,
      proc,
      { real: await udp('127.0.0.1'), allowed: await udp('127.0.0.1'), stranger: await udp('127.0.0.2'), flood, subs },
      o.capacity,
      o.seed,
    );
    t.#listenDrops0 = udpDrops(listenPort);
    return t;
  }

  #check(sub: number, m: Buffer): void {
    const c = this.#subs[sub]!;
    if (m.length === SIZE) {
      const seq = m.readUInt32BE(4);
      if (seq < this.#seq && seq < this.#seen[sub]!.length && m.equals(realDatagram(seq))) {
        if (this.#seen[sub]![seq]!++ === 0) c.unique++;
        else c.duplicates++;
        if (sub === 0) {
          // A rolling corpus of what the relay really sent, for the fuzz to mutate and replay.
          if (this.#recent.length >= 64) this.#recent.shift();
          this.#recent.push(Uint8Array.from(m));
        }
        return;
      }
    }
    if (this.#relayable.has(hash(m))) {
      c.fuzzArrived++;
      return;
    }
    c.corrupt++;
    if (c.corruptSamples.length < 5) c.corruptSamples.push(`${m.length} bytes: ${m.subarray(0, 16).toString('hex')}`);
  }

  /** Starts the real stream and the fuzz; both run until stop(). */
  run(t: RelayTraffic): void {
    const to = this.listenPort;
    const realPerTick = Math.max(1, Math.round(t.realPps / 100));
    this.#timers.push(
      setInterval(() => {
        for (let i = 0; i < realPerTick && this.#seq < this.#seen[0]!.length; i++) {
          this.sockets.real.send(realDatagram(this.#seq++), to, '127.0.0.1', (err) => {
            if (err) this.#sendErrors++;
          });
        }
      }, 10),
    );
    const fuzzPerTick = Math.max(1, Math.round(t.fuzzPps / 10));
    this.#timers.push(
      setInterval(() => {
        for (let i = 0; i < fuzzPerTick; i++) this.#fuzzOne();
      }, 100),
    );
    // Once a minute, a flood from many source ports.
    this.#timers.push(setInterval(() => this.#flood(), 60_000));
  }

  #fuzzOne(): void {
    const corpus = this.#recent.length ? this.#recent : [realDatagram(0)];
    const stranger = this.#rng.chance(0.3);
    const h = hostileDatagram(this.#rng, { corpus, prefixes: [Uint8Array.of(0x47)], maxSize: 16_384 });
    this.#fuzz.byKind[h.kind] = (this.#fuzz.byKind[h.kind] ?? 0) + 1;
    if (h.kind === 'replayed') this.#fuzz.replayed++;
    if (stranger) {
      this.#fuzz.stranger++;
      this.sockets.stranger.send(h.data, this.listenPort, '127.0.0.1');
      return;
    }
    this.#fuzz.allowed++;
    if (isTs(h.data, SIZE) && h.kind !== 'replayed') {
      this.#fuzz.relayable++;
      if (this.#relayable.size < 500_000) this.#relayable.add(hash(h.data));
    }
    this.sockets.allowed.send(h.data, this.listenPort, '127.0.0.1');
  }

  #flood(): void {
    const kinds: HostileKind[] = ['random', 'empty', 'bitflip', 'oversized'];
    this.sockets.flood.forEach((s, i) => {
      for (let k = 0; k < 4; k++) {
        const h = hostileDatagram(this.#rng, { corpus: this.#recent.length ? this.#recent : [realDatagram(0)], kinds, maxSize: 65_507 });
        this.#fuzz.flood++;
        s.send(h.data, this.listenPort, '127.0.0.1');
      }
      void i;
    });
  }

  /** Stops sending (real and fuzz). */
  halt(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  /** Stops sending; after `drainMs`, stops the relay (SIGTERM) and returns the result. */
  async stop(drainMs: number, graceMs: number): Promise<RelayResult> {
    this.halt();
    await new Promise((r) => setTimeout(r, drainMs));
    const listenKernelDrops = udpDrops(this.listenPort) - this.#listenDrops0;
    this.#subs.forEach((c, i) => {
      c.missing = this.#seq - c.unique;
      c.kernelDrops = udpDrops(this.sockets.subs[i]!.address().port);
    });
    await this.proc.stop(graceMs);
    // The final counters arrive on stdout just before the exit.
    await new Promise((r) => setTimeout(r, 200));
    for (const s of [this.sockets.real, this.sockets.allowed, this.sockets.stranger, ...this.sockets.flood, ...this.sockets.subs]) s.close();
    const stats = this.#final ?? this.#stats;
    const flow = ((stats?.flows as Record<string, unknown>[] | undefined) ?? [])[0] as { destinations?: { drops?: Record<string, number> }[] } | undefined;
    // A missing real datagram is explained by a counted drop: the relay's, or the kernel's at a socket.
    let unexplained = 0;
    this.#subs.forEach((c, i) => {
      const d = flow?.destinations?.[i]?.drops;
      const counted = Object.values(d ?? {}).reduce((n, x) => n + x, 0) + listenKernelDrops + c.kernelDrops + this.#sendErrors;
      unexplained += Math.max(0, c.missing - counted);
    });
    return {
      name: `relay ${this.tier}`,
      tier: this.tier,
      listenPort: this.listenPort,
      real: { sent: this.#seq, sendErrors: this.#sendErrors, subscribers: this.#subs },
      fuzz: { ...this.#fuzz },
      listenKernelDrops,
      reflected: this.#reflected,
      stats,
      unexplained,
    };
  }
}
