/**
 * `sluice relay --listen tcp://… --to tcp://…`: one tcp-redirect policy
 * (issue 22, part 2) run until SIGINT/SIGTERM, with its counters printed
 * every --stats-interval seconds and at exit (JSON lines with --json).
 */
import { TcpRelay, type TcpRelayStats } from '../control/tcp-relay.js';
import { Option } from 'commander';
import { TCP_RELAY_MODES, type TcpRedirectPolicy, type TcpRelayMode } from '../policy/tcp-redirect.js';
import { EXIT, emitJson } from './output.js';
import { listenForStop } from './signals.js';

/** The `relay` command's options that apply to a tcp:// listen address. */
export interface TcpRelayArgs {
  readonly listen: string;
  readonly to: readonly string[];
  readonly allow: readonly string[];
  readonly name?: string | undefined;
  readonly maxConnections?: number | undefined;
  /** --tcp-path: the policy's mode. */
  readonly tcpPath?: TcpRelayMode | undefined;
  readonly json?: boolean | undefined;
  /** Seconds; 0: only at exit (default 5, or 0 with --json). */
  readonly statsInterval?: number | undefined;
}

/** `--tcp-path` of `sluice relay` (a tcp:// listen address only). */
export function tcpPathOption(): Option {
  return new Option(
    '--tcp-path <path>',
    'tcp://: how the bytes move: splice (pipe, in the kernel), sockmap (socket to socket in the kernel, eBPF; root), userspace; auto = splice',
  )
    .choices([...TCP_RELAY_MODES])
    .default('auto');
}

/** One human line of a tcp-redirect's counters (`sluice relay` and `sluice run`). */
export function tcpStatsLine(s: TcpRelayStats): string {
  return (
    `${s.name ?? 'tcp-redirect'} [${s.mode}] accepted ${s.accepted} active ${s.active} closed ${s.closed} resets ${s.resets} idle ${s.idleClosed} ` +
    `refused ${s.refused.notAllowed} not allowed, ${s.refused.overLimit} over limit; upstream failed ${s.upstreamFailed}; ` +
    `bytes to upstream ${s.bytesToUpstream}, to clients ${s.bytesToClient}` +
    (s.sockmap
      ? `; in the kernel ${s.sockmap.kernelBytes}, through Node ${s.sockmap.userBytes}, throttled ${s.sockmap.throttles}, pairs left to user space ${s.sockmap.fallbackPairs}`
      : '')
  );
}

export async function runTcpRelay(a: TcpRelayArgs): Promise<number> {
  if (a.to.length !== 1) {
    process.stderr.write('sluice relay: a tcp:// listen address takes exactly one --to tcp://HOST:PORT\n');
    return EXIT.USAGE;
  }
  const json = !!a.json;
  const statsInterval = a.statsInterval ?? (json ? 0 : 5);
  const policy = {
    type: 'tcp-redirect',
    listen: a.listen,
    to: a.to[0]!,
    // No --allow: the schema's "required" message.
    ...(a.allow.length === 0 ? {} : { allow: a.allow.length === 1 ? a.allow[0]! : [...a.allow] }),
    ...(a.name ? { name: a.name } : {}),
    ...(a.maxConnections ? { maxConnections: a.maxConnections } : {}),
    ...(a.tcpPath ? { mode: a.tcpPath } : {}),
  } as TcpRedirectPolicy;
  const stop = listenForStop();
  try {
    const relay = await TcpRelay.start(policy);
    if (json) emitJson('ready', { listen: relay.listen, to: a.to[0], mode: relay.mode });
    else process.stdout.write(`relaying ${relay.listen} -> ${a.to[0]} (${relay.mode})\n`);
    const print = (event: string, extra: Record<string, unknown> = {}) =>
      json ? emitJson(event, { ...extra, ...relay.stats() }) : process.stdout.write(`${tcpStatsLine(relay.stats())}\n`);
    const timer = statsInterval > 0 ? setInterval(() => print('stats'), statsInterval * 1000) : undefined;
    const signal = await stop.signal;
    if (timer) clearInterval(timer);
    await relay.close();
    print('final', { signal });
    return relay.failure ? EXIT.FAILURE : EXIT.OK;
  } finally {
    stop.dispose();
  }
}
