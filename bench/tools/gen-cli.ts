/**
 * The command line and the result line every benchmark generator shares
 * (bench/tools/udp-gen.ts and its node:dgram stand-in), so the harness can
 * run either one unchanged.
 *
 *   --to HOST:PORT --size BYTES --rate PPS --duration SECONDS
 *   --pattern smooth|bursty [--burst N] [--bind HOST]
 *
 * Result: one JSON line {"sent":N,"errors":N,"elapsedS":S,"achievedPps":R[,"lastErrors":{...}]}
 */
import { Command, InvalidArgumentError } from 'commander';
import { parseEndpoint, type Endpoint } from '../../src/wire/endpoint.js';

export interface GenOptions {
  to: Endpoint;
  size: number;
  rate: number;
  duration: number;
  pattern: 'smooth' | 'bursty';
  burst: number;
  bind?: string;
  /** Sockets (source ports) the datagrams are spread over. */
  sources: number;
}

const num =
  (name: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative number`);
    return n;
  };

export function parseGenOptions(program: string): GenOptions {
  const o = new Command(program)
    .requiredOption('--to <host:port>', 'destination')
    .requiredOption('--size <bytes>', 'payload bytes per datagram', num('size'))
    .requiredOption('--rate <pps>', 'datagrams per second', num('rate'))
    .requiredOption('--duration <seconds>', 'how long to send', num('duration'))
    .option('--pattern <smooth|bursty>', 'timing pattern', 'smooth')
    .option('--burst <n>', 'datagrams per burst (bursty)', num('burst'), 16)
    .option('--bind <host>', 'source address')
    .option('--sources <n>', 'send from N sockets (N source ports), taking turns per send call (udp-gen only)', num('sources'), 1)
    .parse()
    .opts<{ to: string; size: number; rate: number; duration: number; pattern: string; burst: number; bind?: string; sources: number }>();
  const to = parseEndpoint(o.to);
  if (!to.ok) {
    process.stderr.write(`${program}: --to: ${to.reason}\n`);
    process.exit(2);
  }
  return { ...o, to: to.endpoint, pattern: o.pattern === 'bursty' ? 'bursty' : 'smooth' };
}

export function printResult(opts: GenOptions, r: { sent: number; errors: number; elapsedS: number; lastErrors?: Map<string, number> }): void {
  const { sent, errors, elapsedS } = r;
  const extra = errors && r.lastErrors ? { lastErrors: Object.fromEntries(r.lastErrors) } : {};
  process.stdout.write(
    `${JSON.stringify({ sent, errors, elapsedS: Number(elapsedS.toFixed(4)), achievedPps: Math.round(sent / Math.max(elapsedS, opts.duration)), ...extra })}\n`,
  );
}
