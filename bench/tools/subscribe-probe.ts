/**
 * The service suite's part (c): time from `POST /v1/flows/{name}/subscribers`
 * to the first datagram at the new subscriber, against a running
 * `sluice serve` whose flow carries traffic.
 *
 * `--count` times: bind a UDP socket on `--bind` (port from the OS), note
 * the time, POST it as a subscriber, note when the POST answered and when
 * the first datagram arrived, DELETE it, close the socket, wait `--gap-ms`.
 * Times are taken in this process with performance.now(); the HTTP
 * connection is kept alive (as a client that manages a relay would), so a
 * sample does not include a TCP handshake. Prints one JSON line:
 * {"event":"result","firstPacketMs":[...],"postMs":[...],"timeouts":N}
 *
 *   --api http://HOST:PORT --token-file F --flow NAME --count N [--bind 127.0.0.1] [--gap-ms 20] [--timeout-ms 3000]
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { flag } from './load-common.js';

const api = new URL(flag('api'));
const token = readFileSync(flag('token-file'), 'utf8').trim();
const flowName = flag('flow');
const count = Number(flag('count'));
const bind = flag('bind', '127.0.0.1');
const gapMs = Number(flag('gap-ms', '20'));
const timeoutMs = Number(flag('timeout-ms', '3000'));
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function call(method: 'POST' | 'DELETE', path: string, body?: object): Promise<number> {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : undefined;
    const req = request(
      {
        agent,
        host: api.hostname,
        port: api.port,
        method,
        path,
        headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () =>
          res.statusCode! < 300 ? resolve(res.statusCode!) : reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function sample(): Promise<{ firstPacketMs: number | undefined; postMs: number }> {
  const socket: Socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, bind, r));
  const to = `udp://${bind}:${socket.address().port}`;
  let t0 = 0;
  let firstAt: number | undefined;
  const first = new Promise<void>((resolve) => {
    socket.once('message', () => {
      firstAt = performance.now();
      resolve();
    });
  });
  t0 = performance.now();
  await call('POST', `/v1/flows/${encodeURIComponent(flowName)}/subscribers`, { to });
  const postMs = performance.now() - t0;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([first, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
  await call('DELETE', `/v1/flows/${encodeURIComponent(flowName)}/subscribers?to=${encodeURIComponent(to)}`);
  await new Promise<void>((r) => socket.close(() => r()));
  return { firstPacketMs: firstAt === undefined ? undefined : firstAt - t0, postMs };
}

async function main(): Promise<void> {
  const firstPacketMs: number[] = [];
  const postMs: number[] = [];
  let timeouts = 0;
  // Two unrecorded samples first: the connection and the service's code paths warm up.
  for (let i = 0; i < count + 2; i++) {
    const s = await sample();
    if (i >= 2) {
      postMs.push(s.postMs);
      if (s.firstPacketMs === undefined) timeouts++;
      else firstPacketMs.push(s.firstPacketMs);
    }
    await new Promise((r) => setTimeout(r, gapMs));
  }
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ event: 'result', firstPacketMs, postMs, timeouts })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`subscribe-probe: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
