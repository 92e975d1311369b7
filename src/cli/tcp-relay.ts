/**
 * `sluice relay --listen tcp://… --to tcp://…`: one tcp-redirect policy
 * (issue 22, part 2) run until SIGINT/SIGTERM, with its counters printed
 * every --stats-interval seconds and at exit (JSON lines with --json).
 */
import { TcpRelay, type TcpRelayStats } from '../control/tcp-relay.js';
import type { TcpRedirectPolicy } from '../policy/tcp-redirect.js';
import { EXIT, emitJson } from './output.js';
import { listenForStop } from './signals.js';

export interface TcpRelayArgs {
  readonly listen: string;
  readonly to: readonly string[];
  readonly allow: readonly string[];
  readonly name?: string;
  readonly maxConnections?: number;
  readonly json: boolean;
  /** Seconds; 0: only at exit. */
  readonly statsInterval: number;
}

function line(s: TcpRelayStats): string {
  return (
    `${s.name ?? 'tcp-redirect'} [${s.mode}] accepted ${s.accepted} active ${s.active} closed ${s.closed} resets ${s.resets} idle ${s.idleClosed} ` +
    `refused ${s.refused.notAllowed} not allowed, ${s.refused.overLimit} over limit; upstream failed ${s.upstreamFailed}; ` +
    `bytes to upstream ${s.bytesToUpstream}, to clients ${s.bytesToClient}`
  );
}

export async function runTcpRelay(a: TcpRelayArgs): Promise<number> {
  if (a.to.length !== 1) {
    process.stderr.write('sluice relay: a tcp:// listen address takes exactly one --to tcp://HOST:PORT\n');
    return EXIT.USAGE;
  }
  const policy: TcpRedirectPolicy = {
    type: 'tcp-redirect',
    listen: a.listen,
    to: a.to[0]!,
    allow: a.allow.length === 1 ? a.allow[0]! : [...a.allow],
    ...(a.name ? { name: a.name } : {}),
    ...(a.maxConnections ? { maxConnections: a.maxConnections } : {}),
  };
  const stop = listenForStop();
  try {
    const relay = await TcpRelay.start(policy);
    if (a.json) emitJson('ready', { listen: relay.listen, to: a.to[0], mode: relay.mode });
    else process.stdout.write(`relaying ${relay.listen} -> ${a.to[0]} (${relay.mode})\n`);
    const print = (event: string, extra: Record<string, unknown> = {}) =>
      a.json ? emitJson(event, { ...extra, ...relay.stats() }) : process.stdout.write(`${line(relay.stats())}\n`);
    const timer = a.statsInterval > 0 ? setInterval(() => print('stats'), a.statsInterval * 1000) : undefined;
    const signal = await stop.signal;
    if (timer) clearInterval(timer);
    await relay.close();
    print('final', { signal });
    return relay.failure ? EXIT.FAILURE : EXIT.OK;
  } finally {
    stop.dispose();
  }
}
