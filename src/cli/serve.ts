/**
 * `sluice serve --config FILE`: the daemon. Starts the service (flows,
 * TPO gateways, send jobs: src/server/service.ts) and its HTTP API, logs
 * `ready`, and runs until SIGINT or SIGTERM (graceful stop, exit 0).
 * SIGHUP re-reads the config file: it wins over the API's changes, and
 * the state file is rewritten to match (docs/HTTP-API.md, "State").
 * An engine that fails does not stop the daemon: it shows in the log,
 * the event stream and /v1/health, where an operator can see it.
 */
import { dirname, join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { PolicyValidationError, TIER_NAMES, type TierChoice } from '../index.js';
import { DEFAULT_API_PORT, SERVE_LOG_LEVELS, parseListenAddress, formatListenAddress } from '../policy/serve-config.js';
import { defaultTokenFile, loadServeConfig, resolveServeConfig, type ResolvedServeConfig } from '../server/config-file.js';
import { createLogger, type LogLevel, type Logger } from '../server/log.js';
import { SluiceService, type ReloadSummary } from '../server/service.js';
import { loadOrCreateToken } from '../server/token.js';
import { startApiServer, type ApiServer } from '../server/http/server.js';
import { createMetrics } from '../server/metrics.js';
import { dashboardPlugin } from '../server/http/dashboard.js';
import { packageVersion } from '../server/version.js';
import { logTpoGateway } from './tpo-log.js';
import { EXIT } from './output.js';
import { waitForSignal } from './signals.js';
import { applyTuneHost, tuneHostOption } from './tune-host.js';
import { ClusterNode } from '../server/cluster-node.js';
import { DEFAULT_CLUSTER_PREFIX } from '../cluster/index.js';
import { checkMeshNeedsCluster, clusterCliOptions, clusterJoinOptions, type ServeClusterOptions } from './serve-cluster.js';

export interface ServeOptions {
  /** The serve config; optional for a cluster node, whose flows come from the store. */
  readonly config?: string;
  readonly listen?: string;
  readonly tokenFile?: string;
  readonly state?: string;
  readonly logLevel?: LogLevel;
  readonly tier?: TierChoice;
  readonly pin?: boolean | string;
  /** `--tune-host` (true, or `backlog=N`): raise net.core.netdev_max_backlog while the daemon runs (tune-host.ts). */
  readonly tuneHost?: string | true;
  /** `--cluster` and its companions: join a cluster on etcd (src/server/cluster-node.ts). */
  readonly cluster?: ServeClusterOptions;
  /** Resolves when the daemon should stop (tests); default: the first SIGINT/SIGTERM. */
  readonly stopSignal?: Promise<string>;
}

/**
 * A cluster node started without --config: every default (tier auto, no
 * local flows), as if its config were an empty file named after the node
 * in the token's directory, so its state file is `<dir>/<node>.state.json`.
 */
function clusterOnlyConfig(o: ServeOptions): ResolvedServeConfig {
  if (!o.cluster)
    throw new PolicyValidationError([{ path: '--config', message: 'required (a cluster node, started with --cluster, may leave it out)' }], 'sluice serve');
  const dir = dirname(o.tokenFile !== undefined ? resolve(o.tokenFile) : defaultTokenFile());
  return resolveServeConfig('{}', join(dir, `${o.cluster.node}.yaml`));
}

/** The config file with the command line's overrides (they win, at start and at every reload). */
function loadWithOverrides(o: ServeOptions): ResolvedServeConfig {
  const c = o.config !== undefined ? loadServeConfig(o.config) : clusterOnlyConfig(o);
  let listen = c.api.listen;
  if (o.listen !== undefined) {
    const r = parseListenAddress(o.listen);
    if (!r.ok) throw new PolicyValidationError([{ path: '--listen', message: r.reason }], 'sluice serve');
    listen = r.listen;
  }
  return {
    ...c,
    api: { ...c.api, listen, ...(o.tokenFile !== undefined ? { tokenFile: resolve(o.tokenFile) } : {}) },
    ...(o.state !== undefined ? { state: resolve(o.state) } : {}),
  };
}

function describe(s: ReloadSummary): string {
  const part = (label: string, names: string[]) => (names.length ? `${label} ${names.join(', ')}` : '');
  return (
    [
      part('added', s.added),
      part('updated', s.updated),
      part('replaced', s.replaced),
      part('removed', s.removed),
      part('gateways started', s.gatewaysStarted),
      part('gateways stopped', s.gatewaysStopped),
      part('gateways restarted', s.gatewaysRestarted),
      s.fanout === 'unchanged' ? '' : `fan-out ${s.fanout}`,
    ]
      .filter(Boolean)
      .join('; ') || 'no change'
  );
}

/** SIGHUP: one reload at a time; a bad file changes nothing and says why. A cluster node's TPO mesh follows (a gateway may have restarted). */
function onReload(service: SluiceService, log: Logger, cluster: ClusterNode | undefined): () => void {
  return () => {
    log.info('SIGHUP: reading the config file again');
    service
      .reload()
      .then(
        (summary) => log.info({ ...summary, state: service.config.state }, `reloaded: ${describe(summary)}; state file rewritten`),
        (err: unknown) => log.error({ err }, `reload failed: ${err instanceof Error ? err.message : String(err)}`),
      )
      .then(() => {
        if (cluster) return cluster.reloaded(service.config);
        if (service.config.cluster?.tpoMesh) log.warn('cluster.tpoMesh is ignored: this daemon is not a cluster node (--cluster)');
      })
      .catch((err: unknown) => log.error({ err }, `TPO mesh after the reload: ${err instanceof Error ? err.message : String(err)}`));
  };
}

export async function runServe(o: ServeOptions): Promise<number> {
  // Listen for signals before anything is bound (or tuned), so an early SIGTERM still stops cleanly.
  const stop = o.stopSignal ?? waitForSignal();
  const config = loadWithOverrides(o);
  checkMeshNeedsCluster(config, o.cluster);
  const log = createLogger({ level: o.logLevel ?? config.log.level });
  const untune = applyTuneHost(o.tuneHost, (line) => log.warn(line));
  try {
    return await serve(o, stop, config, log);
  } finally {
    untune();
  }
}

async function serve(o: ServeOptions, stop: Promise<string>, config: ResolvedServeConfig, log: Logger): Promise<number> {
  const token = loadOrCreateToken(config.api.tokenFile);
  process.stderr.write(`sluice serve: API token in ${token.path}${token.created ? ' (new)' : ''}\n`);
  const service = await SluiceService.start({
    config,
    log,
    ...(o.tier ? { tier: o.tier } : {}),
    ...(o.pin ? { pin: o.pin } : {}),
    logLevelFixed: o.logLevel !== undefined,
    loadConfig: () => loadWithOverrides(o),
    watchGateway: logTpoGateway,
  });
  let cluster: ClusterNode | undefined;
  if (o.cluster) {
    try {
      cluster = await ClusterNode.join(service, clusterJoinOptions(o.cluster, config), log);
    } catch (err) {
      await service.close().catch(() => undefined);
      throw err;
    }
  }
  // Read at scrape time: no message per scrape. A cluster node labels every series with its name.
  const node = cluster ? o.cluster?.node : undefined;
  const metrics = createMetrics(
    {
      flows: () => service.statsSnapshot(),
      gateways: () => service.gateways(),
      failures: () => service.failures(),
      hostDrops: () => service.hostDrops(),
      tcpFlows: () => service.tcpStatsSnapshot(),
      fanout: () => service.fanoutStats(),
      refreshFanout: () => service.refreshFanout(),
      ...(cluster ? { cluster: () => cluster.status() } : {}),
    },
    { version: packageVersion(), ...(node !== undefined ? { node } : {}) },
  );
  let server: ApiServer;
  try {
    server = await startApiServer({
      service,
      token,
      log,
      listen: config.api.listen,
      ...(config.api.tls ? { tls: config.api.tls } : {}),
      maxBodyBytes: config.api.maxBodyBytes,
      rateLimit: config.api.rateLimit,
      metrics,
      dashboard: dashboardPlugin,
      ...(cluster ? { cluster } : {}),
    });
  } catch (err) {
    await cluster?.close().catch(() => undefined);
    await service.close().catch(() => undefined);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL' || code === 'EACCES') {
      throw new PolicyValidationError([{ path: 'api.listen', message: `cannot listen on ${formatListenAddress(config.api.listen)}: ${code}` }], 'sluice serve');
    }
    throw err;
  }
  const host = config.api.listen.host;
  if (!config.api.tls && !(host === 'localhost' || host === '::1' || host.startsWith('127.'))) {
    log.warn({ listen: formatListenAddress(config.api.listen) }, 'the API listens beyond loopback without TLS: the token travels in clear (api.tls)');
  }
  const hup = onReload(service, log, cluster);
  process.on('SIGHUP', hup);
  log.info(
    {
      url: server.url,
      tokenFile: token.path,
      tier: service.tier,
      flows: service.flows().map((f) => f.name),
      gateways: service.gateways().map((g) => g.name),
      state: config.state,
      ...(cluster ? { cluster: o.cluster?.url, node: o.cluster?.node } : {}),
      pid: process.pid,
    },
    'ready',
  );
  const signal = await stop;
  process.off('SIGHUP', hup);
  log.info({ signal }, 'stopping');
  // Leave the cluster first: the lease is revoked and the others take over the subscribers now.
  await cluster?.close().catch((err: unknown) => log.warn({ err }, 'leaving the cluster failed; the lease will expire'));
  await server.close();
  await service.close();
  log.info('stopped');
  return EXIT.OK;
}

/** `sluice serve`, for src/cli/main.ts. */
export function serveCommand(exit: (code: number) => void): Command {
  return new Command('serve')
    .description('run the daemon: flows, TPO gateways and send jobs with an HTTP control API (docs/HTTP-API.md)')
    .option('-c, --config <file>', 'serve config, e.g. examples/serve.yaml (required unless --cluster)')
    .option('--listen <host:port>', `API address (default: the config's api.listen, else 127.0.0.1:${DEFAULT_API_PORT}; IPv6: [::1]:${DEFAULT_API_PORT})`)
    .option('--token-file <file>', "API token file (default: the config's api.tokenFile, else $STATE_DIRECTORY, /var/lib/sluice or ~/.local/state/sluice)")
    .option('--state <file>', "state file (default: the config's state, else beside the config: NAME.state.json)")
    .addOption(new Option('--log-level <level>', "log level (default: the config's log.level, else info)").choices(SERVE_LOG_LEVELS))
    .addOption(new Option('--tier <tier>', "override the config's tier").choices(['auto', ...TIER_NAMES]))
    .option('--pin [dir]', 'kernel tier: pin state in bpffs so forwarding goes on while the daemon is stopped or restarting')
    .addOption(tuneHostOption())
    .option('--cluster <url>', 'join a cluster: etcd://HOST:2379[,HOST:2379...] (docs/CLUSTER.md)')
    .option('--node <name>', "with --cluster: this node's name in the cluster")
    .option('--address <ip>', "with --cluster: this node's address on the cluster network (its flows listen on it; the other nodes send to it)")
    .option('--capacity <n>', 'with --cluster: load units this node takes, in subscribers of a 5 Mbit/s stream (default from its tier, docs/CLUSTER.md)')
    .option('--lease-ttl <s>', 'with --cluster: seconds after which a silent node is taken as gone', '5')
    .option('--cluster-prefix <prefix>', 'with --cluster: key prefix in etcd', DEFAULT_CLUSTER_PREFIX)
    .addHelpText(
      'after',
      `\nExamples:\n  sluice serve --config examples/serve.yaml\n  sluice serve --cluster etcd://127.0.0.1:2379 --node n1 --address 127.0.0.1 --listen 127.0.0.1:9181\n  curl -H "Authorization: Bearer $(cat ~/.local/state/sluice/api.token)" http://127.0.0.1:${DEFAULT_API_PORT}/v1/flows`,
    )
    .action(async (o) => {
      exit(
        await runServe({
          ...(o.config !== undefined ? { config: o.config } : {}),
          ...(o.listen !== undefined ? { listen: o.listen } : {}),
          ...(o.tokenFile !== undefined ? { tokenFile: o.tokenFile } : {}),
          ...(o.state !== undefined ? { state: o.state } : {}),
          ...(o.logLevel !== undefined ? { logLevel: o.logLevel as LogLevel } : {}),
          ...(o.tier !== undefined ? { tier: o.tier as TierChoice } : {}),
          ...(o.pin !== undefined ? { pin: o.pin as boolean | string } : {}),
          ...(o.tuneHost !== undefined ? { tuneHost: o.tuneHost as string | true } : {}),
          ...clusterCliOptions(o),
        }),
      );
    });
}
