/**
 * A TPO gateway pair under soak: two real `sluice tpo` processes on
 * loopback with a capture proxy between them (it forwards their datagrams
 * and keeps the first ones, for replay).
 *
 * Real traffic: TCP transfers one after another through gateway A's
 * explicit TCP listener (random bytes up, a hash-derived answer back,
 * both checked) and a numbered UDP stream through its UDP listener (each
 * datagram's bytes known from its number). Fuzz, in rounds: hostile
 * datagrams and replays at both peer ports (from a stranger and from the
 * peer's own address), a stranger at the UDP listener, hostile TCP
 * clients (allowed and not), hostile HTTP at both control sockets.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Prng, hostileDatagrams, sendBounded, startCaptureProxy, udpDrops, type CaptureProxy } from '../../harness/traffic/fuzz.js';
import { httpHostile, tcpHostile } from '../../harness/traffic/fuzz-stream.js';
import { fetchStatus, type TpoGatewayStatus as GatewayStatus } from '../../src/tpo/index.js';
import { SoakProcess } from './soak-procs.js';

const UDP_SIZE = 1000;
const UDP_TEMPLATE = new Prng(0x7b0).bytes(UDP_SIZE);
function udpDatagram(seq: number): Buffer {
  const b = Buffer.from(UDP_TEMPLATE);
  b.writeUInt32BE(seq, 0);
  b.writeUInt32BE(seq, UDP_SIZE - 4);
  return b;
}

export interface TpoTraffic {
  /** Bytes of each TCP transfer (each way). */
  readonly transferBytes: number;
  /** Real UDP datagrams per second. */
  readonly udpPps: number;
  /** Seconds between fuzz rounds. */
  readonly fuzzEverySeconds: number;
}

export interface TpoResult {
  name: string;
  tcp: { transfers: number; bytes: number; corrupt: number; failed: number; failures: string[] };
  udp: { sent: number; unique: number; duplicates: number; corrupt: number; missing: number; countedDrops: number; kernelDrops: number };
  fuzz: {
    rounds: number;
    peerPortA: number;
    peerPortB: number;
    replayedA: number;
    replayedB: number;
    strangerUdp: number;
    tcpClients: number;
    tcpRefused: number;
    httpRequests: number;
    httpStatuses: Record<string, number>;
  };
  /** Bytes a gateway sent to a fuzzing stranger (must be 0). */
  answered: number;
  /** Sessions started after the pair first came up (must be 0: nothing forged re-paired it). */
  newSessions: { a: number; b: number };
  /** Drops counted at each peer port over the run, against what the fuzz sent there. */
  peerPortDrops: { a: number; b: number };
  status: { a?: GatewayStatus; b?: GatewayStatus };
  unexplained: number;
}

async function udp(address: string, onMessage?: (m: Buffer) => void): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  s.on('error', () => {});
  if (onMessage) s.on('message', onMessage);
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return s;
}

async function freePort(kind: 'udp' | 'tcp'): Promise<number> {
  if (kind === 'udp') {
    const s = await udp('127.0.0.1');
    const p = s.address().port;
    await new Promise<void>((r) => s.close(() => r()));
    return p;
  }
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const p = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return p;
}

const peerDrops = (s: GatewayStatus | undefined) =>
  s ? s.peers.reduce((n, p) => n + p.dropped, 0) + Object.values(s.dropped?.peerPort ?? {}).reduce((n, x) => n + x, 0) : 0;

export class TpoTarget {
  #running = true;
  #timers: NodeJS.Timeout[] = [];
  #loops: Promise<void>[] = [];
  readonly #tcp = { transfers: 0, bytes: 0, corrupt: 0, failed: 0, failures: [] as string[] };
  readonly #udp = { sent: 0, unique: 0, duplicates: 0, corrupt: 0 };
  readonly #udpSeen: Uint8Array;
  readonly #fuzz = {
    rounds: 0,
    peerPortA: 0,
    peerPortB: 0,
    replayedA: 0,
    replayedB: 0,
    strangerUdp: 0,
    tcpClients: 0,
    tcpRefused: 0,
    httpRequests: 0,
    httpStatuses: {} as Record<string, number>,
  };
  #answered = 0;
  #status: { a?: GatewayStatus; b?: GatewayStatus } = {};
  #first: { a?: GatewayStatus; b?: GatewayStatus } = {};
  #kd0 = { a: 0, b: 0, lu: 0, sink: 0 };

  private constructor(
    readonly a: SoakProcess,
    readonly b: SoakProcess,
    readonly proxy: CaptureProxy,
    readonly ports: { a: number; b: number; tcp: number; udp: number; controlA: string; controlB: string },
    readonly sinks: { tcp: net.Server; tcpOpen: Set<net.Socket>; udp: dgram.Socket; client: dgram.Socket; fuzz: dgram.Socket[] },
    capacity: number,
    readonly seed: number,
  ) {
    this.#udpSeen = new Uint8Array(capacity);
  }

  static async start(t0: number, dir: string, o: { seed: number; capacity: number }): Promise<TpoTarget> {
    const key = randomBytes(32).toString('hex');
    const portA = await freePort('udp');
    const portB = await freePort('udp');
    const listenTcp = await freePort('tcp');
    const listenUdp = await freePort('udp');
    // The sinks: TCP echoes every byte back (so a transfer is checked both ways); UDP records.
    const open = new Set<net.Socket>();
    const tcpSink = net.createServer({ allowHalfOpen: true }, (sock) => {
      open.add(sock);
      sock.on('close', () => open.delete(sock));
      sock.on('error', () => {});
      sock.on('data', (d) => {
        if (!sock.write(d)) {
          sock.pause();
          sock.once('drain', () => sock.resume());
        }
      });
      sock.on('end', () => sock.end());
    });
    await new Promise<void>((r) => tcpSink.listen(0, '127.0.0.1', r));
    const udpSink = await udp('127.0.0.1');
    const proxy = await startCaptureProxy({ address: '127.0.0.1', port: portB }, { max: 2000 });
    const controlA = join(dir, 'soak-a.sock');
    const controlB = join(dir, 'soak-b.sock');
    writeFileSync(
      join(dir, 'soak-b.json'),
      JSON.stringify({
        name: 'soak-b',
        listen: `127.0.0.1:${portB}`,
        peers: [{ name: 'soak-a', key, keyId: 1 }],
        deliver: { allow: ['127.0.0.0/8'] },
        control: controlB,
      }),
    );
    writeFileSync(
      join(dir, 'soak-a.json'),
      JSON.stringify({
        name: 'soak-a',
        listen: `127.0.0.1:${portA}`,
        peers: [{ name: 'soak-b', address: `127.0.0.1:${proxy.port}`, key, keyId: 1 }],
        table: [
          {
            name: 'tcp',
            protocol: 'tcp',
            listen: `127.0.0.1:${listenTcp}`,
            target: `127.0.0.1:${(tcpSink.address() as net.AddressInfo).port}`,
            src: '127.0.0.1/32',
          },
          { name: 'udp', protocol: 'udp', listen: `127.0.0.1:${listenUdp}`, target: `127.0.0.1:${udpSink.address().port}`, src: '127.0.0.1/32' },
        ],
        control: controlA,
      }),
    );
    const b = SoakProcess.start('tpo gateway B', ['tpo', '--config', join(dir, 'soak-b.json'), '--json'], t0);
    await b.waitForEvent('ready', 30_000);
    const a = SoakProcess.start('tpo gateway A', ['tpo', '--config', join(dir, 'soak-a.json'), '--json'], t0);
    await a.waitForEvent('ready', 30_000);
    const fuzz = [await udp('127.0.0.1'), await udp('127.0.0.1'), await udp('127.0.0.2')];
    const t = new TpoTarget(
      a,
      b,
      proxy,
      { a: portA, b: portB, tcp: listenTcp, udp: listenUdp, controlA, controlB },
      { tcp: tcpSink, tcpOpen: open, udp: udpSink, client: await udp('127.0.0.1'), fuzz },
      o.capacity,
      o.seed,
    );
    for (const s of fuzz) s.on('message', () => t.#answered++);
    udpSink.on('message', (m) => t.#checkUdp(m));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = (await fetchStatus(controlA).catch(() => undefined)) as GatewayStatus | undefined;
      if (s?.peers[0]?.up) break;
      if (Date.now() > deadline) throw new Error(`the TPO pair did not come up: ${a.stderrTail.slice(-5).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    t.#kd0 = { a: udpDrops(portA), b: udpDrops(portB), lu: udpDrops(listenUdp), sink: udpDrops(udpSink.address().port) };
    await t.#poll();
    t.#first = { ...t.#status };
    return t;
  }

  #checkUdp(m: Buffer): void {
    const seq = m.length === UDP_SIZE ? m.readUInt32BE(0) : -1;
    if (seq >= 0 && seq < this.#udp.sent && seq < this.#udpSeen.length && m.equals(udpDatagram(seq))) {
      if (this.#udpSeen[seq]!++ === 0) this.#udp.unique++;
      else this.#udp.duplicates++;
      return;
    }
    this.#udp.corrupt++;
  }

  async #poll(): Promise<void> {
    const [a, b] = await Promise.all([fetchStatus(this.ports.controlA).catch(() => undefined), fetchStatus(this.ports.controlB).catch(() => undefined)]);
    if (a) this.#status.a = a as GatewayStatus;
    if (b) this.#status.b = b as GatewayStatus;
  }

  /** One real TCP transfer: `n` random bytes up, echoed back; what comes back must hash the same. */
  #transfer(n: number): Promise<void> {
    const data = randomBytes(n);
    const sha = createHash('sha256').update(data).digest('hex');
    return new Promise((resolve) => {
      const sock = net.connect({ port: this.ports.tcp, host: '127.0.0.1' });
      const back = createHash('sha256');
      let got = 0;
      const timer = setTimeout(() => fail('no full answer within 120 s'), 120_000);
      const fail = (why: string) => {
        clearTimeout(timer);
        sock.destroy();
        this.#tcp.failed++;
        if (this.#tcp.failures.length < 10) this.#tcp.failures.push(why);
        resolve();
      };
      sock.on('error', (e) => fail(e.message));
      sock.on('data', (d: Buffer) => {
        back.update(d);
        got += d.length;
      });
      sock.on('end', () => {
        clearTimeout(timer);
        const echoed = back.digest('hex');
        if (got === n && echoed === sha) {
          this.#tcp.transfers++;
          this.#tcp.bytes += n;
        } else {
          this.#tcp.corrupt++;
          if (this.#tcp.failures.length < 10) this.#tcp.failures.push(`${got} of ${n} bytes came back, ${echoed === sha ? 'same' : 'other'} hash`);
        }
        sock.end();
        resolve();
      });
      sock.once('connect', () => {
        let at = 0;
        const write = () => {
          while (at < data.length) {
            const piece = data.subarray(at, at + 256 * 1024);
            at += piece.length;
            if (!sock.write(piece)) return void sock.once('drain', write);
          }
          sock.end();
        };
        write();
      });
    });
  }

  run(t: TpoTraffic): void {
    // TCP transfers back to back.
    this.#loops.push(
      (async () => {
        while (this.#running) await this.#transfer(t.transferBytes);
      })(),
    );
    const perTick = Math.max(1, Math.round(t.udpPps / 100));
    this.#timers.push(
      setInterval(() => {
        for (let i = 0; i < perTick && this.#udp.sent < this.#udpSeen.length; i++)
          this.sinks.client.send(udpDatagram(this.#udp.sent++), this.ports.udp, '127.0.0.1');
      }, 10),
    );
    this.#timers.push(setInterval(() => void this.#poll(), 10_000));
    // Fuzz rounds, one at a time.
    this.#loops.push(
      (async () => {
        let round = 0;
        while (this.#running) {
          await this.#fuzzRound(this.seed + 1000 * round++);
          for (let waited = 0; this.#running && waited < t.fuzzEverySeconds * 1000; waited += 250) await new Promise((r) => setTimeout(r, 250));
        }
      })(),
    );
  }

  async #fuzzRound(seed: number): Promise<void> {
    const out = this.proxy.captured.filter((c) => c.dir === 'out').map((c) => c.data);
    const back = this.proxy.captured.filter((c) => c.dir === 'back').map((c) => c.data);
    const prefixes = [Uint8Array.of(1, 1, 0, 1), Uint8Array.of(1, 1, 0, 2), Uint8Array.of(1, 2, 0, 0), Uint8Array.of(1, 3, 0, 0)];
    const lim = { burst: 16, gapMs: 2, maxMs: 20_000 };
    const [fb, fa, , , su, tOk, tBad, hA, hB] = await Promise.all([
      sendBounded(this.sinks.fuzz[0]!, { address: '127.0.0.1', port: this.ports.b }, hostileDatagrams(seed, 400, { corpus: out, prefixes, maxSize: 16_384 }), {
        ...lim,
        maxCount: 400,
      }),
      sendBounded(
        this.sinks.fuzz[1]!,
        { address: '127.0.0.1', port: this.ports.a },
        hostileDatagrams(seed + 1, 400, { corpus: back, prefixes, maxSize: 16_384 }),
        { ...lim, maxCount: 400 },
      ),
      (async () => {
        for (const d of out.slice(0, 100)) await this.proxy.inject(d, { address: '127.0.0.1', port: this.ports.b });
        this.#fuzz.replayedB += Math.min(100, out.length);
      })(),
      (async () => {
        const client = this.proxy.client;
        if (!client) return;
        for (const d of back.slice(0, 100)) await this.proxy.inject(d, client);
        this.#fuzz.replayedA += Math.min(100, back.length);
      })(),
      sendBounded(this.sinks.fuzz[2]!, { address: '127.0.0.1', port: this.ports.udp }, hostileDatagrams(seed + 2, 200, { maxRandom: 1400 }), {
        ...lim,
        maxCount: 200,
      }),
      tcpHostile({ address: '127.0.0.1', port: this.ports.tcp }, seed + 3, { count: 10, maxMs: 20_000, parallel: 2 }),
      tcpHostile({ address: '127.0.0.1', port: this.ports.tcp, localAddress: '127.0.0.2' }, seed + 4, {
        count: 5,
        maxMs: 20_000,
        parallel: 2,
        kinds: ['data-then-end', 'connect-only'],
      }),
      httpHostile(this.ports.controlA, seed + 5, { count: 10, maxMs: 20_000, holdMs: 300 }),
      httpHostile(this.ports.controlB, seed + 6, { count: 10, maxMs: 20_000, holdMs: 300 }),
    ]);
    this.#fuzz.rounds++;
    this.#fuzz.peerPortB += fb.sent;
    this.#fuzz.peerPortA += fa.sent;
    this.#fuzz.strangerUdp += su.sent;
    this.#fuzz.tcpClients += tOk.attempts;
    this.#fuzz.tcpRefused += tBad.attempts;
    for (const h of [hA, hB]) {
      this.#fuzz.httpRequests += h.requests;
      for (const [k, v] of Object.entries(h.statuses)) this.#fuzz.httpStatuses[k] = (this.#fuzz.httpStatuses[k] ?? 0) + v;
    }
  }

  /** Stops starting new transfers, datagrams and fuzz rounds; resolves when the running ones ended. */
  async halt(): Promise<void> {
    this.#running = false;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await Promise.all(this.#loops);
  }

  async stop(drainMs: number, graceMs: number): Promise<TpoResult> {
    await this.halt();
    await new Promise((r) => setTimeout(r, drainMs));
    await this.#poll();
    const sa = this.#status.a;
    const sb = this.#status.b;
    const kernelDrops = udpDrops(this.ports.udp) - this.#kd0.lu + udpDrops(this.sinks.udp.address().port) - this.#kd0.sink;
    const countedDrops = (sa?.counters.udpDropped ?? 0) + (sb?.counters.udpDropped ?? 0) + (sb?.counters.droppedReplies ?? 0);
    const missing = this.#udp.sent - this.#udp.unique;
    const result: TpoResult = {
      name: 'tpo pair',
      tcp: { ...this.#tcp },
      udp: { ...this.#udp, missing, countedDrops, kernelDrops },
      fuzz: { ...this.#fuzz },
      answered: this.#answered,
      newSessions: {
        a: (sa?.peers[0]?.sessions ?? 0) - (this.#first.a?.peers[0]?.sessions ?? 0),
        b: (sb?.peers[0]?.sessions ?? 0) - (this.#first.b?.peers[0]?.sessions ?? 0),
      },
      peerPortDrops: { a: peerDrops(sa) - peerDrops(this.#first.a), b: peerDrops(sb) - peerDrops(this.#first.b) },
      status: { ...(sa ? { a: sa } : {}), ...(sb ? { b: sb } : {}) },
      unexplained: Math.max(0, missing - countedDrops - kernelDrops) + this.#udp.corrupt + this.#tcp.corrupt,
    };
    await Promise.all([this.a.stop(graceMs), this.b.stop(graceMs)]);
    await this.proxy.close();
    await new Promise<void>((r) => {
      this.sinks.tcp.close(() => r());
      for (const sock of this.sinks.tcpOpen) sock.destroy();
    });
    for (const s of [this.sinks.udp, this.sinks.client, ...this.sinks.fuzz]) s.close();
    return result;
  }
}
