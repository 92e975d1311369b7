/**
 * Runs flows until SIGINT/SIGTERM, printing periodic and final counters.
 * Shared by `sluice relay` and `sluice run`.
 */
import { Sluice } from '../control/sluice.js';
import type { Flow } from '../control/flow.js';
import { applyReload, type ReloadSummary } from './reload.js';
import type { FlowPolicy, TierChoice } from '../policy/schema.js';
import { emitJson, statsTable, EXIT } from './output.js';
import { mediaLines } from './media-lines.js';
import type { EngineFailedError } from '../errors.js';
import { waitForSignal } from './signals.js';
import { createCliLogger, localTimestamp, type Logger, type LogLevel } from './log-lines.js';
import { RateTracker, rateLine } from './flow-rates.js';
import { applyTuneHost } from './tune-host.js';
import type { TcpRedirectPolicy } from '../policy/tcp-redirect.js';
import { tcpStatsLine } from './tcp-relay.js';

export interface SessionOptions {
  tier: TierChoice;
  /** Batched tier: most time (ms) a datagram is held for batching. */
  batchHoldMs?: number;
  /** Batched tier: worker threads per flow (Sluice option workers). */
  workers?: number | 'auto';
  /** UDP flows, and tcp-redirects (a config file's `type: tcp-redirect` flows: started after the others, left as they are by a reload). */
  flows: (FlowPolicy | TcpRedirectPolicy)[];
  /** Kernel tier: pin state (true or a bpffs dir); stopping then leaves flows forwarding. */
  pin?: boolean | string;
  /** Kernel tier: where redirect flows run (Sluice option kernelHook). */
  kernelHook?: 'xdp' | 'tcx' | 'auto';
  json: boolean;
  /** Seconds between status lines; 0 = none. */
  statsInterval: number;
  /** Resolves when the session should stop (tests); default: first SIGINT/SIGTERM. */
  stopSignal?: Promise<string>;
  /** On SIGHUP: returns the flows now wanted (e.g. the config file re-read); throws if invalid. */
  reload?: () => Promise<FlowPolicy[]>;
  /** Least severe lifecycle message written to stderr (default info); periodic lines follow --stats-interval only. */
  logLevel?: LogLevel;
  /** Where lifecycle messages go (default: human lines on stderr at logLevel). */
  log?: Logger;
  /** `--tune-host` (true, or `backlog=N`): raise net.core.netdev_max_backlog while running (tune-host.ts). */
  tuneHost?: string | true;
}

function describe(s: ReloadSummary): string {
  const part = (label: string, names: string[]) => (names.length ? `${label} ${names.join(', ')}` : '');
  return (
    [part('added', s.added), part('updated', s.updated), part('replaced', s.replaced), part('removed', s.removed)].filter(Boolean).join('; ') || 'no change'
  );
}

/** Starts every flow; on failure removes those already started. Returns the exit code. */
export async function runSession(opts: SessionOptions): Promise<number> {
  // Listen for signals before anything is bound (or tuned), so an early SIGTERM still stops cleanly.
  const stop = opts.stopSignal ?? waitForSignal();
  // What --tune-host changes on the host is always said on stderr, --json or not.
  const untune = applyTuneHost(opts.tuneHost, (line) => process.stderr.write(`sluice: ${line}\n`));
  try {
    return await runFlows(opts, stop);
  } finally {
    untune();
  }
}

async function runFlows(opts: SessionOptions, stop: Promise<string>): Promise<number> {
  // With --json the events on stdout say what happened; stderr then carries only warnings and errors, unless asked.
  const log = opts.log ?? createCliLogger(opts.logLevel ?? (opts.json ? 'warn' : 'info'));
  const sluice = await Sluice.open({
    tier: opts.tier,
    ...(opts.batchHoldMs !== undefined ? { batchHoldMs: opts.batchHoldMs } : {}),
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    ...(opts.pin ? { kernelPin: opts.pin } : {}),
    ...(opts.kernelHook ? { kernelHook: opts.kernelHook } : {}),
  });
  try {
    const isTcp = (f: FlowPolicy | TcpRedirectPolicy): f is TcpRedirectPolicy => f.type === 'tcp-redirect';
    for (const f of opts.flows) if (!isTcp(f)) await sluice.apply(f);
    for (const f of opts.flows) if (isTcp(f)) await sluice.apply(f);
  } catch (err) {
    await sluice.close();
    throw err;
  }
  // Pinned flows of an earlier run that this configuration no longer has.
  const swept = sluice.sweepUnclaimed();
  if (swept) log.info(`removed ${swept} pinned flow(s) of an earlier run that the configuration no longer has`);
  const flows = sluice.flows();
  const tcp = sluice.tcpFlows();
  // Kernel tier: the host's backlog queue drops copies (once; the stats' hostDrops count them).
  sluice.on('hostwarning', (message) => (opts.json ? emitJson('warning', { t: Date.now(), kind: 'hostBacklog', message }) : log.warn(message)));
  // Stream alarms (media payloads) and RTCP silences, as they happen: of the flows now and of those a reload adds.
  const watch = (f: Flow) => {
    f.on('alarm', (a) => {
      if (opts.json)
        emitJson('alarm', { t: Date.now(), flow: f.name, kind: a.kind, state: a.state, ...(a.pid === undefined ? {} : { pid: a.pid }), detail: a.detail });
      else log[a.state === 'raised' ? 'warn' : 'info'](`${f.name}: ${a.kind} ${a.state}: ${a.detail}`);
    });
    f.on('silence', (to, silent) => {
      if (opts.json) emitJson('silence', { t: Date.now(), flow: f.name, to, silent });
      else log[silent ? 'warn' : 'info'](`${f.name}: ${to} ${silent ? 'sends no RTCP reports: suspended' : 'reports again: resumed'}`);
    });
  };
  for (const f of flows) watch(f);
  sluice.on('flowadded', watch);
  if (opts.json) {
    emitJson('ready', {
      t: Date.now(),
      tier: sluice.tier,
      flows: flows.map((f) => ({ name: f.name, type: f.type, listen: f.listenUrl, to: f.stats().destinations.map((d) => d.to) })),
      ...(tcp.length ? { tcpFlows: tcp.map((f) => ({ name: f.name, type: f.type, listen: f.listen, to: f.to, mode: f.mode })) } : {}),
    });
  } else {
    for (const f of flows) {
      const to = f.stats().destinations.map((d) => d.to);
      log.info(`${f.name}: ${f.type} ${f.listenUrl} -> ${to.join(', ') || '(no subscribers yet)'} [tier ${sluice.tier}]`);
    }
    for (const f of tcp) log.info(`${f.name}: tcp-redirect ${f.listen} -> ${f.to} [${f.mode}]`);
    log.info('running; Ctrl-C to stop');
  }
  // Periodic lines: rates since the previous line (the first: since ready), then totals.
  const rates = new RateTracker(sluice.stats());
  const timer =
    opts.statsInterval > 0
      ? setInterval(() => {
          const stats = sluice.stats();
          const t = Date.now();
          const { intervalMs, rates: r } = rates.sample(stats);
          const tcpStats = tcp.map((f) => f.stats());
          if (opts.json)
            emitJson('stats', {
              t,
              intervalMs: Math.round(intervalMs),
              flows: stats.map((s, i) => ({ ...s, ...r[i]! })),
              ...(tcp.length ? { tcpFlows: tcpStats } : {}),
            });
          else {
            const stamp = localTimestamp(t);
            process.stderr.write(stats.map((s, i) => `${stamp} sluice: ${rateLine(s, r[i]!)}\n`).join(''));
            process.stderr.write(tcpStats.map((s) => `${stamp} sluice: ${tcpStatsLine(s)}\n`).join(''));
          }
        }, opts.statsInterval * 1000)
      : undefined;
  const onHup = () => {
    if (!opts.reload) return;
    // Reloads run one at a time; a bad file leaves the running flows as they are.
    reloading = reloading.then(async () => {
      try {
        const summary = await applyReload(sluice, await opts.reload!());
        if (opts.json) emitJson('reload', { t: Date.now(), ok: true, ...summary });
        else log.info(`reloaded: ${describe(summary)}`);
      } catch (err) {
        if (opts.json) emitJson('reload', { t: Date.now(), ok: false, error: err instanceof Error ? err.message : String(err) });
        else log.error(`reload failed, flows unchanged: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  };
  let reloading: Promise<void> = Promise.resolve();
  if (opts.reload) process.on('SIGHUP', onHup);
  // A session runs until a signal, or until its engine dies: whatever else
  // keeps the event loop alive (sockets, a worker), a dead engine must not
  // turn into a silent exit 0 later.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const failed = new Promise<EngineFailedError>((resolve) => {
    if (sluice.failure) resolve(sluice.failure);
    else sluice.once('engineFailed', resolve);
  });
  const outcome = await Promise.race([stop.then((signal) => ({ signal, error: undefined })), failed.then((error) => ({ signal: undefined, error }))]);
  clearInterval(keepAlive);
  process.off('SIGHUP', onHup);
  if (outcome.signal) log.info(`${outcome.signal}: stopping`);
  if (outcome.error) {
    // Always on stderr (the log), and as an event for --json readers.
    log.error(`${outcome.error.message}; its flows no longer move packets, stopping`);
    if (opts.json) emitJson('engineFailed', { t: Date.now(), engine: outcome.error.engine, error: outcome.error.message });
  }
  await reloading;
  if (timer) clearInterval(timer);
  const keep = Boolean(opts.pin) && sluice.tier === 'kernel';
  const final = await sluice.close({ keepForwarding: keep });
  if (keep) log.info('kernel forwarding left in place (pinned); run again with --pin to adopt it, or `sluice detach` to remove it');
  if (opts.json)
    emitJson('final', {
      t: Date.now(),
      ...(outcome.signal ? { signal: outcome.signal } : { error: outcome.error!.message }),
      flows: final,
      ...(tcp.length ? { tcpFlows: tcp.map((f) => f.stats()) } : {}),
      ...(keep ? { keptForwarding: true } : {}),
    });
  else {
    process.stdout.write(`${statsTable(final)}\n${final.flatMap(mediaLines).join('\n')}${final.some((f) => f.media || f.rtcp) ? '\n' : ''}`);
    process.stdout.write(tcp.map((f) => `${tcpStatsLine(f.stats())}\n`).join(''));
  }
  return outcome.error ? EXIT.FAILURE : EXIT.OK;
}
