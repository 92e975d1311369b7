/**
 * The lab's source: numbered datagrams (lab-datagram.ts) at a fixed rate,
 * each sequence number sent once to every target (a flow's primary and
 * backup ingest). Bounded twice: by count and by time.
 *
 *   node --import tsx harness/cluster/lab-source.ts --to A:P[,B:P] --rate N --count N --max-seconds S [--size B]
 *
 * stdout: {"ev":"ready","t":..} then {"ev":"done","sent":N,"t":..} (also on SIGTERM).
 */
import dgram from 'node:dgram';
import { parseArgs } from 'node:util';
import { labDatagram } from './lab-datagram.js';

const { values } = parseArgs({
  options: {
    to: { type: 'string' },
    rate: { type: 'string', default: '200' },
    count: { type: 'string', default: '1000' },
    'max-seconds': { type: 'string', default: '60' },
    size: { type: 'string', default: '200' },
  },
});
const targets = (values.to ?? '')
  .split(',')
  .filter(Boolean)
  .map((s) => {
    const i = s.lastIndexOf(':');
    return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
  });
const rate = Number(values.rate);
const count = Number(values.count);
const maxMs = Number(values['max-seconds']) * 1000;
const size = Number(values.size);
if (!targets.length || !(rate > 0) || !(count > 0) || !(maxMs > 0)) {
  process.stderr.write('lab-source: need --to and positive --rate, --count, --max-seconds\n');
  process.exit(2);
}

const now = (): number => performance.timeOrigin + performance.now();
const sock = dgram.createSocket('udp4');
let seq = 0;
let finished = false;
/** Sends not yet handed to the kernel: closing before they are would drop the last ones. */
let pending = 0;
const sent = (): void => {
  pending--;
  if (finished && pending === 0) sock.close();
};
const start = performance.now();

function finish(): void {
  if (finished) return;
  finished = true;
  clearInterval(timer);
  process.stdout.write(`${JSON.stringify({ ev: 'done', sent: seq, t: now() })}\n`);
  if (pending === 0) sock.close();
}

// A coarse tick that sends whatever is due: the rate holds on average even when a tick is late.
const timer = setInterval(() => {
  const elapsed = performance.now() - start;
  const due = Math.min(count, Math.floor((elapsed / 1000) * rate));
  while (seq < due) {
    const b = labDatagram(seq, size);
    for (const t of targets) {
      pending++;
      sock.send(b, t.port, t.host, sent);
    }
    seq++;
  }
  if (seq >= count || elapsed >= maxMs) finish();
}, 2);
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
process.stdout.write(`${JSON.stringify({ ev: 'ready', t: now() })}\n`);
