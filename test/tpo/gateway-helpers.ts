/**
 * Two TPO gateways on loopback with the link emulator between them, in
 * explicit mode: site A intercepts (listeners), site B delivers. Shared by
 * the gateway tests.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTpoConfig, type TpoConfig } from '../../src/tpo/config/config.js';
import { Gateway } from '../../src/tpo/gateway/gateway.js';
import { ExplicitInterception } from '../../src/tpo/intercept/explicit.js';
import { LinkEmulator } from '../../harness/wan/udp-emulator.js';
import type { TpoGateway, TpoGatewayEvents } from '../../src/tpo/index.js';

export const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A TCP server that answers each connection with the sha256 of what it read, then FIN. */
export async function hashServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.on('end', () => s.end(h.digest('hex')));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

/** A free UDP port on `host` (an IPv4 address; closed again before use). */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, host, r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Whether `port` binds now on every address, for TCP and for UDP. */
async function bindsEverywhere(port: number): Promise<boolean> {
  const tcp = net.createServer();
  const tcpOk = await new Promise<boolean>((r) => {
    tcp.once('error', () => r(false));
    tcp.listen(port, '0.0.0.0', () => r(true));
  });
  if (tcpOk) await new Promise<void>((r) => tcp.close(() => r()));
  if (!tcpOk) return false;
  const udp = dgram.createSocket('udp4');
  const udpOk = await new Promise<boolean>((r) => {
    udp.once('error', () => r(false));
    udp.bind(port, '0.0.0.0', () => r(true));
  });
  await new Promise<void>((r) => udp.close(() => r()));
  return udpOk;
}

/**
 * A port for a listener a test opens later, perhaps on several addresses
 * and for both TCP and UDP (a published service): below the kernel's
 * ephemeral range (32768-60999 by default) and free on every address for
 * both, so no socket bound to port 0 meanwhile (a gateway's destination
 * socket, a client's) can take it first. A port from listen(0) is an
 * ephemeral one: the test that used it for a mesh service once found it
 * taken by then.
 */
export async function freeServicePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await bindsEverywhere(port)) return port;
  }
  throw new Error('no free port in 20000-31999 for TCP and UDP');
}

export async function freeTcpPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export interface Pair {
  a: Gateway;
  b: Gateway;
  emu: LinkEmulator;
  ic: ExplicitInterception;
  configA: TpoConfig;
  configB: TpoConfig;
  /** Restarts gateway B (same config, new state); `abrupt`: as after a crash, without telling A. */
  restartB(abrupt?: boolean): Promise<void>;
  close(): Promise<void>;
}

export interface PairOptions {
  /** Table entries for A (explicit: listen + target). */
  table: unknown[];
  allow?: string[];
  delayMs?: number;
  loss?: number;
  seed?: number;
  peerDeadMs?: number;
  udpIdleMs?: number;
  /** More `limits` fields for both gateways (maxFlows, maxFlowsPerSource, tcpIdleMs, ...). */
  limits?: Record<string, number>;
}

export async function startPair(o: PairOptions): Promise<Pair> {
  const portA = await freeUdpPort();
  const portB = await freeUdpPort();
  const emu = await LinkEmulator.create({ seed: o.seed ?? 11, peerA: { address: '127.0.0.1', port: portA }, peerB: { address: '127.0.0.1', port: portB } });
  emu.set('both', { delayMs: o.delayMs ?? 5, loss: o.loss ?? 0 });
  const key = randomBytes(32).toString('hex');
  const limits = { peerDeadMs: o.peerDeadMs ?? 30_000, udpIdleMs: o.udpIdleMs ?? 60_000, ...o.limits };
  const configA = parseTpoConfig({
    name: 'a',
    listen: `127.0.0.1:${portA}`,
    peers: [{ name: 'b', address: `${emu.a.address}:${emu.a.port}`, key, keyId: 1 }],
    table: o.table,
    limits,
  });
  const configB = parseTpoConfig({
    name: 'b',
    listen: `127.0.0.1:${portB}`,
    peers: [{ name: 'a', key, keyId: 1 }],
    deliver: { allow: o.allow ?? ['127.0.0.0/8'] },
    limits,
  });
  // The gateway subscribes before the listeners open (as `sluice tpo` does), so no early client is refused.
  const ic = new ExplicitInterception(configA.table);
  const a = await Gateway.start(configA, { interception: ic, interceptionName: 'explicit' });
  await ic.listen();
  let b = await Gateway.start(configB);
  const pair: Pair = {
    a,
    b,
    emu,
    ic,
    configA,
    configB,
    async restartB(abrupt = false) {
      await pair.b.close({ abrupt });
      b = await Gateway.start(configB);
      pair.b = b;
    },
    async close() {
      await pair.a.close();
      await pair.b.close();
      await ic.close();
      await emu.close();
    },
  };
  // Up once the handshake is done.
  const t0 = performance.now();
  while (!a.status().peers[0]!.up) {
    if (performance.now() - t0 > 10_000) throw new Error('gateways did not pair within 10 s');
    await sleep(10);
  }
  return pair;
}

/** How a client's connection ended, and when (ms after connecting). */
export function clientOutcome(port: number, hangMs = 30_000): Promise<{ outcome: 'reset' | 'refused' | 'closed' | 'hang'; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let connected = false;
    const done = (outcome: 'reset' | 'refused' | 'closed' | 'hang') => {
      clearTimeout(timer);
      s.destroy();
      resolve({ outcome, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => done('hang'), hangMs);
    s.on('connect', () => {
      connected = true;
      s.write('hello');
    });
    s.on('error', (e: NodeJS.ErrnoException) => done(!connected && e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'closed'));
    s.on('end', () => done('closed'));
    s.on('close', () => done(connected ? 'reset' : 'refused'));
  });
}

/** Every `event` the gateway emits from now on. */
export function collect<K extends keyof TpoGatewayEvents>(gw: TpoGateway, event: K): TpoGatewayEvents[K][0][] {
  const got: TpoGatewayEvents[K][0][] = [];
  gw.on(event, ((x: TpoGatewayEvents[K][0]) => got.push(x)) as never);
  return got;
}

/** Polls `ok` until it holds; on a timeout the error carries `explain()` (the state that did not get there), so a rare failure says why. */
export async function until(what: string, ok: () => boolean, ms = 20_000, explain?: () => unknown): Promise<void> {
  const t0 = performance.now();
  while (!ok()) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms${explain ? `\n${JSON.stringify(explain(), null, 1)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
