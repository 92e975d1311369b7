/**
 * The lab's subscribers: one UDP socket per port on one address, each
 * recording for every lab datagram its sequence number, arrival time and
 * source address (which node fed it).
 *
 *   node --import tsx harness/cluster/lab-receiver.ts --bind ADDR --ports 6000,6001,...
 *
 * stdout: {"ev":"ready"} once every socket is bound;
 *   {"ev":"feeder","port":P,"from":ADDR,"t":..,"seq":N} when a port hears from a source
 *   it has not heard from in the last FEEDER_QUIET_MS (so a test can wait for a move);
 *   {"ev":"dumped","path":..} after stdin `dump PATH` wrote every record so far as JSON
 *   { "<port>": { "seq": [..], "t": [..], "from": [..] } }.
 * Memory is bounded: past MAX_RECORDS per port, older records are not kept.
 */
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { labSeq } from './lab-datagram.js';

const MAX_RECORDS = 400_000;
const FEEDER_QUIET_MS = 500;

const { values } = parseArgs({ options: { bind: { type: 'string' }, ports: { type: 'string' } } });
const bind = values.bind ?? '';
const ports = (values.ports ?? '').split(',').filter(Boolean).map(Number);
if (!bind || !ports.length) {
  process.stderr.write('lab-receiver: need --bind ADDR --ports P,P,...\n');
  process.exit(2);
}

const now = (): number => performance.timeOrigin + performance.now();
const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

interface Log {
  seq: number[];
  t: number[];
  from: string[];
  lastFrom: Map<string, number>;
}
const logs = new Map<number, Log>();

await Promise.all(
  ports.map(
    (port) =>
      new Promise<void>((resolve, reject) => {
        const log: Log = { seq: [], t: [], from: [], lastFrom: new Map() };
        logs.set(port, log);
        const s = dgram.createSocket('udp4');
        s.on('error', reject);
        s.on('message', (msg, rinfo) => {
          const seq = labSeq(msg);
          if (seq === undefined) return;
          const t = now();
          const last = log.lastFrom.get(rinfo.address);
          if (last === undefined || t - last > FEEDER_QUIET_MS) out({ ev: 'feeder', port, from: rinfo.address, t, seq });
          log.lastFrom.set(rinfo.address, t);
          if (log.seq.length >= MAX_RECORDS) return;
          log.seq.push(seq);
          log.t.push(Math.round(t * 100) / 100);
          log.from.push(rinfo.address);
        });
        // A large buffer: a burst after a failover must not be lost here and blamed on the relay.
        s.bind(port, bind, () => {
          s.setRecvBufferSize(4 * 1024 * 1024);
          resolve();
        });
      }),
  ),
);
out({ ev: 'ready' });

createInterface({ input: process.stdin }).on('line', (line) => {
  const m = /^dump (.+)$/.exec(line.trim());
  if (!m) return;
  const dump: Record<string, { seq: number[]; t: number[]; from: string[] }> = {};
  for (const [port, l] of logs) dump[port] = { seq: l.seq, t: l.t, from: l.from };
  writeFileSync(m[1]!, JSON.stringify(dump));
  out({ ev: 'dumped', path: m[1] });
});
process.stdin.on('end', () => process.exit(0));
