/**
 * Hostile TCP connections and HTTP requests for fuzz tests and the soak:
 * `tcpHostile` and `httpHostile` open bounded numbers of them (count and
 * time caps) against a listener the caller names, loopback or a namespace
 * the test created. Randomness is the seeded Prng of fuzz.ts.
 */
import net from 'node:net';
import { flipBits, Prng, type UdpTarget } from './fuzz.js';

export const TCP_HOSTILE_KINDS = ['data-then-end', 'reset', 'half-close', 'idle-close', 'burst', 'connect-only'] as const;
export type TcpHostileKind = (typeof TCP_HOSTILE_KINDS)[number];

export interface TcpHostileReport {
  /** Connections attempted (a refused one may be reset before its 'connect' event). */
  attempts: number;
  /** Connections established (seen by this side). */
  connections: number;
  byKind: Record<string, number>;
  /** Bytes written on connections that were not reset (the target may receive them). */
  bytes: number;
  /** Connections the far side closed or refused (an error or close before ours). */
  closedByPeer: number;
  elapsedMs: number;
}

/**
 * Opens up to `count` TCP connections to `to` (for at most `maxMs`), each
 * a hostile client: random data then FIN, an immediate reset, a half-close
 * that keeps reading, an idle connection closed later, a burst of up to
 * 256 KiB, or a connect and nothing. At most `parallel` at once; every
 * connection is destroyed within `holdMs`.
 */
export async function tcpHostile(
  to: UdpTarget & { localAddress?: string },
  seed: number,
  o: { count: number; maxMs: number; parallel?: number; holdMs?: number; kinds?: readonly TcpHostileKind[] },
): Promise<TcpHostileReport> {
  const rng = new Prng(seed);
  const t0 = performance.now();
  const report: TcpHostileReport = { attempts: 0, connections: 0, byKind: {}, bytes: 0, closedByPeer: 0, elapsedMs: 0 };
  const holdMs = o.holdMs ?? 300;
  const one = (kind: TcpHostileKind) =>
    new Promise<void>((resolve) => {
      report.attempts++;
      const sock = net.connect({ port: to.port, host: to.address, ...(to.localAddress ? { localAddress: to.localAddress } : {}) });
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve();
      };
      const timer = setTimeout(finish, holdMs + 2000);
      sock.on('error', () => {
        report.closedByPeer++;
        finish();
      });
      sock.on('close', finish);
      sock.on('data', () => {});
      sock.on('end', () => {
        if (kind !== 'half-close') report.closedByPeer++;
      });
      sock.on('connect', () => {
        report.connections++;
        report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
        switch (kind) {
          case 'data-then-end': {
            const d = rng.bytes(rng.range(1, 4096));
            report.bytes += d.length;
            sock.end(d);
            setTimeout(finish, holdMs);
            break;
          }
          case 'reset':
            sock.resetAndDestroy();
            finish();
            break;
          case 'half-close':
            sock.end();
            setTimeout(finish, holdMs);
            break;
          case 'idle-close':
            setTimeout(finish, holdMs);
            break;
          case 'burst': {
            const d = rng.bytes(rng.range(4096, 256 * 1024));
            report.bytes += d.length;
            sock.write(d);
            setTimeout(() => (rng.chance(0.5) ? sock.resetAndDestroy() : sock.end()), holdMs / 2);
            setTimeout(finish, holdMs);
            break;
          }
          case 'connect-only':
            finish();
            break;
        }
      });
    });
  // The kind is drawn when its connection starts, between the draws the connections make: the seed's sequence as before.
  await runBounded(o.count, () => one(rng.pick(o.kinds ?? TCP_HOSTILE_KINDS)), o.parallel ?? 8, t0 + o.maxMs);
  report.elapsedMs = performance.now() - t0;
  return report;
}

/** Hostile requests for an HTTP server (raw bytes: nothing here is a well-formed client). */
export function hostileHttpRequests(rng: Prng, n: number): Uint8Array[] {
  const enc = (s: string) => new TextEncoder().encode(s);
  const gen: (() => Uint8Array)[] = [
    () => rng.bytes(rng.range(1, 2048)),
    () => enc(`${rng.pick(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT', 'BREW', 'G\0ET'])} /status HTTP/1.1\r\nHost: x\r\n\r\n`),
    () => enc(`GET /${'../'.repeat(rng.range(1, 50))}etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n`),
    () => enc(`GET /${'a'.repeat(rng.range(1000, 100_000))} HTTP/1.1\r\nHost: x\r\n\r\n`),
    () => enc(`GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(rng.range(8_000, 100_000))}\r\n\r\n`),
    () => enc(`GET /status HTTP/1.1\r\n${Array.from({ length: rng.range(100, 3000) }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`),
    () => enc(`POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /status HTTP/1.1\r\n\r\n`),
    () => enc(`POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: ${rng.pick([-1, 99999999999, 1e30])}\r\n\r\nabc`),
    () => enc(`GET /status HTTP/1.1\r\nHost: x\r\n`), // never finished
    () => enc(`GET /status HTTP/9.9\r\n\r\n`),
    () => enc(`GET http://evil.example/status HTTP/1.1\r\nHost: evil.example\r\n\r\n`),
    () => enc('GET /status HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(rng.range(2, 200))), // pipelined
    () => enc(`GET /status?${'q=1&'.repeat(rng.range(10, 5000))} HTTP/1.1\r\n\r\n`),
    () => flipBits(enc('GET /status HTTP/1.1\r\nHost: x\r\n\r\n'), rng),
    () => enc(`\r\n`.repeat(rng.range(1, 5000))),
  ];
  return Array.from({ length: n }, () => rng.pick(gen)());
}

export interface HttpHostileReport {
  requests: number;
  /** Status codes of the first response line on each connection ('none' when the server closed without one). */
  statuses: Record<string, number>;
  /** Bytes answered, in all (bounded amplification on a local socket, but still). */
  bytesIn: number;
  bytesOut: number;
  elapsedMs: number;
}

/**
 * Sends each request on its own connection to the Unix socket (or TCP
 * endpoint) `path`, reads what comes back for at most `holdMs`, and closes.
 */
export async function httpHostile(
  path: string,
  seed: number,
  o: { count: number; maxMs: number; holdMs?: number; parallel?: number },
): Promise<HttpHostileReport> {
  const rng = new Prng(seed);
  const t0 = performance.now();
  const report: HttpHostileReport = { requests: 0, statuses: {}, bytesIn: 0, bytesOut: 0, elapsedMs: 0 };
  const holdMs = o.holdMs ?? 500;
  const one = (req: Uint8Array) =>
    new Promise<void>((resolve) => {
      const sock = net.connect({ path });
      let answer = '';
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(answer);
        const k = m ? m[1]! : 'none';
        report.statuses[k] = (report.statuses[k] ?? 0) + 1;
        resolve();
      };
      const timer = setTimeout(finish, holdMs);
      sock.on('error', finish);
      sock.on('close', finish);
      sock.on('data', (d: Buffer) => {
        report.bytesIn += d.length;
        if (answer.length < 256) answer += d.toString('latin1');
      });
      sock.on('connect', () => {
        report.requests++;
        report.bytesOut += req.length;
        sock.write(req);
      });
    });
  const requests = hostileHttpRequests(rng, o.count);
  await runBounded(requests.length, (i) => one(requests[i]!), o.parallel ?? 4, t0 + o.maxMs);
  report.elapsedMs = performance.now() - t0;
  return report;
}

/** Starts `start(i)` for i < count, at most `parallel` running at a time, none after `deadline` (performance.now() ms); resolves when all started ones ended. */
async function runBounded(count: number, start: (i: number) => Promise<void>, parallel: number, deadline: number): Promise<void> {
  const running = new Set<Promise<void>>();
  for (let i = 0; i < count && performance.now() < deadline; i++) {
    const p = start(i).then(() => {
      running.delete(p);
    });
    running.add(p);
    if (running.size >= parallel) await Promise.race(running);
  }
  await Promise.all(running);
}
