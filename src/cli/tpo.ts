/**
 * `sluice tpo --config tpo.yaml` runs a TPO gateway until SIGINT/SIGTERM;
 * `sluice status` prints a running gateway's peers, flows and counters
 * from its control socket (issue #7). The gateway's events (peers up and
 * down, failed handshakes, an unreachable peer, failed flows, faults) are
 * logged (tpo-log.ts: pino on stderr, `--log-level`); the ready and
 * stopped lines and the periodic status stay as they were (stderr, or
 * JSON lines on stdout with `--json`).
 */
import { MAX_TPO_CONFIG_BYTES, TpoConfigError, type TpoConfig } from '../tpo/config/config.js';
import { parseTpoConfigFile } from '../tpo/config/load.js';
import { TpoGateway, type TpoGatewayStatus } from '../tpo/tpo-gateway.js';
import { ControlSocketError, defaultControlPath, fetchStatus } from '../tpo/control-socket.js';
import { readInputText } from './input.js';
import { PolicyValidationError } from '../errors.js';
import { EXIT, emitJson, table } from './output.js';
import { onExit, waitForSignal } from './signals.js';
import { createLogger, type Logger, type LogLevel } from '../server/log.js';
import { logTpoGateway } from './tpo-log.js';

export interface TpoRunOptions {
  readonly config: string;
  readonly json: boolean;
  readonly statsInterval: number;
  readonly io?: 'auto' | 'batched' | 'portable';
  readonly stopSignal?: Promise<string>;
  /** Least severe level logged (default info; with --json, warn: as `relay` and `run`). */
  readonly logLevel?: LogLevel;
  /** The logger (default: createLogger on stderr at logLevel). */
  readonly log?: Logger;
}

export function loadTpoConfig(path: string): TpoConfig {
  const text = readInputText(path, MAX_TPO_CONFIG_BYTES, 'invalid TPO config');
  try {
    // A keyFile path is relative to the config file's folder.
    return parseTpoConfigFile(text, path);
  } catch (err) {
    // The CLI reports config problems as usage errors (exit 2), field by field.
    if (err instanceof TpoConfigError)
      throw new PolicyValidationError(
        err.issues.map((m) => ({ path: '', message: m })),
        `invalid TPO config ${path}`,
      );
    throw err;
  }
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

const kib = (n: number): string => (n / 1024).toFixed(0);

export function statusText(s: TpoGatewayStatus): string {
  const out: string[] = [];
  out.push(`gateway ${s.name}: peers on udp ${s.listen} (${s.io} I/O), interception ${s.interception}`);
  for (const l of s.listeners) out.push(`  ${l.entry}: ${l.protocol} ${l.address}:${l.port}`);
  out.push('');
  out.push(
    table(
      ['peer', 'role', 'up', 'sessions', 'flows', 'srtt ms', 'bw Mbit/s', 'sent', 'received', 'retx', 'redundant', 'dropped'],
      s.peers.map((p) => [
        p.name,
        p.role,
        p.up ? 'yes' : 'no',
        p.sessions,
        p.flows,
        p.srttMs ?? '-',
        p.bandwidthMbit ?? '-',
        mb(p.bytesSent),
        mb(p.bytesReceived),
        p.retransmissions,
        p.redundantDatagrams,
        p.dropped,
      ]),
    ),
  );
  // Each session's rate control (as `ss -i` shows a TCP connection's): why a transfer runs at the rate it does.
  const rateRows = s.peers.flatMap(({ name, rate, pacingMbit, inFlightBytes, queuedBytes }) =>
    rate ? [[name, rate.phase, rate.minRttMs ?? '-', pacingMbit ?? '-', kib(rate.windowBytes), kib(inFlightBytes), kib(queuedBytes), rate.hostDelayMs]] : [],
  );
  if (rateRows.length) {
    out.push('');
    out.push(table(['peer', 'phase', 'min rtt ms', 'pacing Mbit/s', 'window KiB', 'in flight KiB', 'queued KiB', 'host delay ms'], rateRows));
  }
  // Each peer's handshake and receive counters (the 'dropped' column above is their sum with the session's drops).
  if (s.peers.length && s.peers.every((p) => p.link && p.drops)) {
    out.push('');
    out.push(
      table(
        [
          'peer',
          'initiations',
          'unanswered',
          'responses',
          'unconfirmed',
          'goodbyes',
          'bad handshake',
          'no session',
          'malformed',
          'other conn',
          'unauthenticated',
          'replayed',
          'bad buffers',
          'handler errors',
          'seal failures',
        ],
        s.peers.map((p) => [
          p.name,
          p.link.initiationsSent,
          // Absent in the status of a gateway older than this command.
          p.link.unanswered ?? '-',
          p.link.responsesSent,
          p.link.unconfirmed,
          p.link.goodbyes,
          p.link.droppedHandshake,
          p.link.droppedNoSession,
          p.drops.malformed,
          p.drops.otherConnection,
          p.drops.unauthenticated,
          p.drops.replayed,
          p.link.badBuffers,
          p.link.handlerErrors,
          p.link.sealFailures,
        ]),
      ),
    );
  }
  if (s.flows.length) {
    out.push('');
    out.push(
      table(
        ['flow', 'role', 'peers', 'state', 'bytes out', 'bytes in', 'pending to app'],
        s.flows.map((f) => [f.tuple, f.role, f.peers.join(','), f.state, f.bytesOut, f.bytesIn, f.pendingToApp ?? '-']),
      ),
    );
  }
  if (s.table) {
    const b = s.table.busiestSource;
    out.push(
      '',
      `flow table: ${s.table.flows} of ${s.table.maxFlows} (at most ${s.table.maxFlowsPerSource} per source)${b ? `; busiest source ${b.source}: ${b.flows}` : ''}`,
    );
  }
  // The peer port's and the demux's drops, always shown (zeros too: an operator looks for them by name).
  if (s.port) {
    const r = s.port.receiveDropped;
    const d = s.port.sendDropped;
    out.push(
      '',
      `peer port: received ${s.port.datagramsReceived}, sent ${s.port.datagramsSent}; receive drops: unknownSource=${r.unknownSource} truncated=${r.truncated} handlerFailures=${r.listenerError}; send drops: queueFull=${d.queueFull} sendError=${d.sendError} closed=${d.closed}` +
        `${s.port.lastSendError ? `; last send error ${s.port.lastSendError}` : ''}${s.port.lastListenerError ? `; last handler failure: ${s.port.lastListenerError}` : ''}`,
    );
  }
  if (s.demux) out.push(`demux drops: malformed=${s.demux.malformed} noLink=${s.demux.noLink} noSource=${s.demux.noSource}`);
  if (s.sequencer)
    out.push(
      `sequencer: held ${s.sequencer.heldBytes} bytes; overflows=${s.sequencer.overflows} (peer bound ${s.sequencer.groupOverflows}) orphaned=${s.sequencer.orphaned} late=${s.sequencer.late}`,
    );
  const c = Object.entries(s.counters).filter(([, v]) => v > 0);
  if (c.length) out.push('', `counters: ${c.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  return out.join('\n');
}

/**
 * Shutdown is bounded: the gateway resets its flows at once, and whatever
 * is still closing after this long (a peer-port thread that does not stop,
 * a socket that does not close) is left to the process's exit, which
 * destroys every socket.
 */
export const SHUTDOWN_DEADLINE_MS = 5_000;

export async function runTpo(o: TpoRunOptions): Promise<number> {
  const stop = o.stopSignal ?? waitForSignal();
  const config = loadTpoConfig(o.config);
  const transparent = config.intercept.mode === 'transparent';
  let gw: TpoGateway;
  try {
    gw = await TpoGateway.start({ config, ...(o.io ? { io: o.io } : {}) });
  } catch (err) {
    if (err instanceof ControlSocketError) {
      // A path problem is the operator's to fix (config `control:`): said plainly, exit 2, no stack trace.
      process.stderr.write(`sluice tpo: ${err.message}\n`);
      return EXIT.USAGE;
    }
    throw err;
  }
  const log = o.log ?? createLogger({ level: o.logLevel ?? (o.json ? 'warn' : 'info') });
  const stopLogging = logTpoGateway(gw, log);
  // The library installs no process handlers: transparent rules and routes go at exit (process.exit, a second signal) from here.
  const forgetOnExit = onExit(() => gw.removeKernelStateSync());
  // Something that ends the gateway's usefulness (its peer port's receive thread, the interception's) stops it with a message.
  let fault = gw.fault;
  const faulted = new Promise<string>((resolve) => {
    if (fault) resolve('fault');
    gw.on('fault', (err) => {
      fault ??= err;
      resolve('fault');
    });
  });
  const say = (text: string, event: string, data: Record<string, unknown>) => {
    if (o.json) emitJson(event, data);
    else process.stderr.write(`${text}\n`);
  };
  const st = gw.status();
  say(
    `sluice tpo: ${config.name} up; peers on udp ${st.listen} (${st.io} I/O); ${config.peers.map((p) => `${p.name}${p.address ? ` → ${p.address.address}:${p.address.port}` : ' (answers)'}`).join(', ')}; interception ${st.interception}${st.listeners.length ? `: ${st.listeners.map((l) => `${l.entry} ${l.protocol} ${l.address}:${l.port}`).join(', ')}` : ''}; status: sluice status --socket ${gw.controlPath}`,
    'ready',
    { name: config.name, listen: st.listen, io: st.io, interception: st.interception, listeners: st.listeners, control: gw.controlPath },
  );
  // Peers up and down are log records (tpo-log.ts); --json also keeps them as events on stdout.
  if (o.json) {
    gw.on('peerup', (p) => emitJson('peer-up', { peer: p }));
    gw.on('peerdown', (p) => emitJson('peer-down', { peer: p }));
  }
  const timer =
    o.statsInterval > 0
      ? setInterval(() => (o.json ? emitJson('status', { ...gw.status() }) : process.stderr.write(`${statusText(gw.status())}\n\n`)), o.statsInterval * 1000)
      : undefined;
  const sig = await Promise.race([stop, faulted]);
  if (timer) clearInterval(timer);
  // A signal takes the transparent rules down at once, so new flows reach their destinations directly while the gateway closes.
  if (!fault) gw.removeKernelStateSync();
  if (fault) say(`sluice tpo: stopping: ${fault.message}`, 'fault', { message: fault.message });
  const final = gw.status();
  const shutdown = gw.close();
  let deadline: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    deadline = setTimeout(() => resolve('late'), SHUTDOWN_DEADLINE_MS);
  });
  const outcome = await Promise.race([
    shutdown.then(
      () => 'done' as const,
      (err: unknown) => err as Error,
    ),
    late,
  ]);
  clearTimeout(deadline);
  if (outcome === 'done') forgetOnExit();
  if (outcome !== 'done') {
    // The flows were reset when the gateway began closing; the process's exit destroys whatever is left.
    const why = outcome === 'late' ? `did not finish within ${SHUTDOWN_DEADLINE_MS / 1000} s` : `failed: ${outcome.message}`;
    say(`sluice tpo: shutdown ${why}; remaining sockets are destroyed at exit`, 'shutdown-incomplete', { reason: why });
  }
  stopLogging();
  if (o.json) emitJson('stopped', { signal: sig, status: final });
  else process.stderr.write(`sluice tpo: stopped (${sig})${transparent ? '; interception rules removed' : ''}\n${statusText(final)}\n`);
  return fault || outcome !== 'done' ? EXIT.FAILURE : EXIT.OK;
}

export async function runStatus(o: { socket?: string; name?: string; json: boolean }): Promise<number> {
  const path = o.socket ?? defaultControlPath(o.name ?? 'tpo');
  let s: TpoGatewayStatus;
  try {
    s = (await fetchStatus(path)) as TpoGatewayStatus;
  } catch (err) {
    // fetchStatus's errors name the path and say what went wrong (nobody there, too large, too slow).
    process.stderr.write(`sluice status: ${(err as Error).message}\n`);
    return EXIT.FAILURE;
  }
  if (o.json) process.stdout.write(`${JSON.stringify(s)}\n`);
  else process.stdout.write(`${statusText(s)}\n`);
  return EXIT.OK;
}
