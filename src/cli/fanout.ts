/**
 * `sluice fanout`: a udpxy-like live fan-out (issue 22, part 3). An HTTP
 * front answers `GET /udp/GROUP:PORT`, `/rtp/GROUP:PORT`, `/NAME` and
 * `/status`; `--tcp` adds plain TCP listeners that stream one input to
 * whoever connects. Only configured inputs (`--input`, `--tcp`) and what
 * `--allow` covers may be joined. Counters every --stats-interval seconds
 * and at exit (JSON lines with --json); runs until SIGINT/SIGTERM.
 */
import { Command, InvalidArgumentError as CliArgError, Option } from 'commander';
import { Fanout, type FanoutStats } from '../control/fanout.js';
import { EXIT, emitJson } from './output.js';
import { listenForStop } from './signals.js';

const collect = (value: string, prev: string[]) => [...prev, value];
const int = (min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new CliArgError(`expected an integer from ${min} to ${max}`);
  return n;
};

function line(s: FanoutStats): string {
  const r = s.front.refused;
  const refused = Object.values(r).reduce((a, b) => a + b, 0);
  return (
    `fanout clients ${s.totals.clients} inputs ${s.totals.inputs} accepted ${s.front.accepted} refused ${refused} ` +
    `(bad ${r.badRequest}, not found ${r.notFound}, not allowed ${r.notAllowed}, over limit ${r.overLimit + r.pendingLimit}, timeout ${r.timeout}); ` +
    `sent ${s.totals.bytesSent} bytes, skipped ${s.totals.skippedChunks} chunks (${s.totals.skippedBytes} bytes), dropped ${s.totals.ended.dropped} slow clients`
  );
}

export function fanoutCommand(exit: (code: number) => void): Command {
  return new Command('fanout')
    .description('serve live UDP/RTP inputs (unicast or multicast) to many HTTP and TCP clients, udpxy-style, with tee(2)/splice(2) (docs/FANOUT.md)')
    .option('--http <host:port>', 'HTTP front: GET /udp/GROUP:PORT, /rtp/GROUP:PORT, /NAME, /status (udpxy uses port 4022)')
    .option('--input <[name=]url>', 'an input always allowed: udp://GROUP:PORT or rtp://GROUP:PORT; with name= also GET /NAME (repeatable)', collect, [])
    .option('--tcp <listen=input>', 'a plain TCP listener streaming one input: tcp://HOST:PORT=udp://GROUP:PORT (repeatable)', collect, [])
    .option(
      '--allow <cidr[:ports]>',
      "further inputs a request may name: 239.0.0.0/8, 239.1.1.0/24:1234-1240, [ff3e::/16]:5000; 'any' makes an open proxy (repeatable)",
      collect,
      [],
    )
    .option('--interface <name|address>', 'interface to join groups on (default: by route)')
    .addOption(new Option('--max-clients <n>', 'streams at once (default 256)').argParser(int(1, 100_000)))
    .addOption(
      new Option('--pipe-size <bytes>', "each client's pipe (default 1048576): how far a client may lag before chunks are skipped").argParser(
        int(4096, 1 << 30),
      ),
    )
    .addOption(new Option('--chunk <bytes>', 'datagrams are gathered into chunks of about this size (default 32768)').argParser(int(1024, 256 << 10)))
    .addOption(new Option('--flush <ms>', 'a partial chunk waits at most this long (default 10)').argParser(int(0, 1000)))
    .addOption(new Option('--drop-after <ms>', 'a client that could take no chunk for this long is dropped (default 5000)').argParser(int(10, 3_600_000)))
    .addOption(new Option('--stats-interval <seconds>', 'print counters every N seconds (0: only at exit)').argParser(int(0, 86_400)))
    .option('--json', 'machine-readable JSON lines on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n  sluice fanout --http 0.0.0.0:4022 --allow 239.0.0.0/8 --interface eth0\n    curl http://HOST:4022/udp/239.1.1.1:1234 | ffplay -' +
        '\n  sluice fanout --http 127.0.0.1:4022 --input news=udp://239.1.1.1:1234 --tcp tcp://0.0.0.0:9000=udp://239.1.1.1:1234',
    )
    .action(async (o) => {
      exit(await runFanout(o));
    });
}

interface Args {
  http?: string;
  input: string[];
  tcp: string[];
  allow: string[];
  interface?: string;
  maxClients?: number;
  pipeSize?: number;
  chunk?: number;
  flush?: number;
  dropAfter?: number;
  statsInterval?: number;
  json?: boolean;
}

async function runFanout(a: Args): Promise<number> {
  const tcp = a.tcp.map((t) => {
    const i = t.indexOf('=');
    return i < 0 ? { listen: t, input: '' } : { listen: t.slice(0, i), input: t.slice(i + 1) };
  });
  const json = !!a.json;
  const statsInterval = a.statsInterval ?? (json ? 0 : 10);
  const stop = listenForStop();
  try {
    const f = await Fanout.start({
      http: a.http,
      tcp,
      inputs: a.input,
      allow: a.allow,
      interface: a.interface,
      limits: {
        ...(a.maxClients ? { maxClients: a.maxClients } : {}),
        ...(a.pipeSize ? { pipeBytes: a.pipeSize } : {}),
        ...(a.chunk ? { chunkBytes: a.chunk } : {}),
        ...(a.flush !== undefined ? { flushMs: a.flush } : {}),
        ...(a.dropAfter ? { dropAfterMs: a.dropAfter } : {}),
      },
    });
    if (json) emitJson('ready', { http: f.http, tcp: f.tcp });
    else process.stdout.write(`fanout: http ${f.http ?? '-'}${f.tcp.length ? `, tcp ${f.tcp.join(' ')}` : ''}\n`);
    const print = async (event: string, s?: FanoutStats) => {
      const stats = s ?? (await f.stats());
      if (json) emitJson(event, { ...stats });
      else process.stdout.write(`${line(stats)}\n`);
    };
    const timer = statsInterval > 0 ? setInterval(() => void print('stats'), statsInterval * 1000) : undefined;
    const signal = await stop.signal;
    if (timer) clearInterval(timer);
    const last = await f.close();
    if (json) emitJson('final', { signal, ...last });
    else process.stdout.write(`${line(last)}\n`);
    return f.failure ? EXIT.FAILURE : EXIT.OK;
  } finally {
    stop.dispose();
  }
}
