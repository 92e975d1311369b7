/**
 * The CLI as a client of a running `sluice serve`: `sluice flows`,
 * `sluice subscribers add|rm`, `sluice status --url`. The token is read
 * from the same file the daemon uses (by default the same default path),
 * with the same checks; requests go through the global fetch.
 */
import { Command, Option } from 'commander';
import type { FlowView } from '../server/flow-view.js';
import type { TcpFlowView } from '../server/tcp-flows.js';
import type { HealthView } from '../server/service.js';
import { defaultTokenFile } from '../server/config-file.js';
import { readToken, TokenFileError } from '../server/token.js';
import type { TpoGatewayStatus } from '../tpo/index.js';
import { EXIT, table } from './output.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:9180';
/** A daemon that does not answer within this is reported as not answering. */
const REQUEST_TIMEOUT_MS = 15_000;

export interface ClientOptions {
  readonly url?: string;
  readonly tokenFile?: string;
  readonly json?: boolean;
}

/** A failure to report: the message, and the exit code. */
class ClientFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

async function call<T>(o: ClientOptions, method: string, path: string, body?: unknown): Promise<T> {
  const base = (o.url ?? DEFAULT_API_URL).replace(/\/+$/, '');
  let token: string;
  const tokenFile = o.tokenFile ?? defaultTokenFile();
  try {
    token = readToken(tokenFile).value;
  } catch (err) {
    if (err instanceof TokenFileError) {
      const hint =
        err.reason === 'EACCES'
          ? ' (run as the user the daemon runs as, or give --token-file)'
          : err.reason === 'ENOENT'
            ? ' (give --token-file: the path `sluice serve` printed at start)'
            : '';
      throw new ClientFailure(`${err.message}${hint}`, EXIT.USAGE);
    }
    throw err;
  }
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new ClientFailure(`cannot reach the daemon at ${base}: ${why} (is \`sluice serve\` running? --url says where)`, EXIT.FAILURE);
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ClientFailure(`${base}${path}: HTTP ${res.status}, not JSON (is this a sluice daemon?)`, EXIT.FAILURE);
  }
  if (!res.ok) {
    const e = (parsed as { error?: { code?: string; message?: string; issues?: { path: string; message: string }[] } } | undefined)?.error;
    const issues = e?.issues?.map((i) => `\n  ${i.path || '(body)'}: ${i.message}`).join('') ?? '';
    throw new ClientFailure(`${e?.code ?? `HTTP ${res.status}`}: ${e?.message ?? text}${issues}`, res.status === 400 ? EXIT.USAGE : EXIT.FAILURE);
  }
  return parsed as T;
}

/** Runs a client command: output on stdout, failures on stderr with their exit code. */
async function run(fn: () => Promise<string | undefined>): Promise<number> {
  try {
    const out = await fn();
    if (out !== undefined) process.stdout.write(out.endsWith('\n') ? out : `${out}\n`);
    return EXIT.OK;
  } catch (err) {
    if (err instanceof ClientFailure) {
      process.stderr.write(`sluice: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

const drops = (v: FlowView) => Object.values(v.stats.drops).reduce((a, b) => a + b, 0);

/** GET /v1/flows lists the config file's tcp-redirects too (TcpFlowView): their own table. */
type ListedFlow = FlowView | TcpFlowView;
const isTcp = (f: ListedFlow): f is TcpFlowView => f.type === 'tcp-redirect';

function flowsTable(all: readonly ListedFlow[]): string {
  if (all.length === 0) return 'no flows';
  const udp = all.filter((f): f is FlowView => !isTcp(f));
  const tcp = all.filter(isTcp);
  const parts: string[] = [];
  if (udp.length)
    parts.push(
      table(
        ['flow', 'type', 'tier', 'listen', 'subscribers', 'pkts in', 'pkts out', 'drops'],
        udp.map((f) => [f.name, f.type, f.tier, f.listen, f.stats.destinations.length, f.stats.packetsIn, f.stats.packetsOut, drops(f)]),
      ),
    );
  if (tcp.length)
    parts.push(
      table(
        ['flow', 'type', 'mode', 'listen', 'to', 'active', 'accepted', 'bytes up', 'bytes down'],
        tcp.map((f) => [f.name, f.type, f.mode, f.listen, f.to, f.stats.active, f.stats.accepted, f.stats.bytesToUpstream, f.stats.bytesToClient]),
      ),
    );
  return parts.join('\n\n');
}

export function runFlows(o: ClientOptions): Promise<number> {
  return run(async () => {
    const r = await call<{ flows: ListedFlow[] }>(o, 'GET', '/v1/flows');
    return o.json ? JSON.stringify(r) : flowsTable(r.flows);
  });
}

export function runSubscribers(o: ClientOptions & { action: 'add' | 'rm'; flow: string; to: string }): Promise<number> {
  return run(async () => {
    const path = `/v1/flows/${encodeURIComponent(o.flow)}/subscribers`;
    const view =
      o.action === 'add' ? await call<FlowView>(o, 'POST', path, { to: o.to }) : await call<FlowView>(o, 'DELETE', `${path}?to=${encodeURIComponent(o.to)}`);
    if (o.json) return JSON.stringify(view);
    return `${o.action === 'add' ? 'added' : 'removed'} ${o.to} ${o.action === 'add' ? 'to' : 'from'} ${view.name}: ${view.stats.destinations.length} subscriber(s)`;
  });
}

export function runDaemonStatus(o: ClientOptions): Promise<number> {
  return run(async () => {
    const [health, flows, tpo] = await Promise.all([
      call<HealthView>(o, 'GET', '/v1/health'),
      call<{ flows: ListedFlow[] }>(o, 'GET', '/v1/flows'),
      call<{ gateways: TpoGatewayStatus[] }>(o, 'GET', '/v1/tpo'),
    ]);
    if (o.json) return JSON.stringify({ health, flows: flows.flows, gateways: tpo.gateways });
    const out = [
      `sluice ${health.version} at ${o.url ?? DEFAULT_API_URL}: ${health.status}, tier ${health.tier}, up ${health.uptimeS} s, ${health.flows} flow(s), ${health.gateways} gateway(s)`,
    ];
    for (const f of health.failures) out.push(`  failure at ${f.at}: ${f.engine}: ${f.message}`);
    out.push('', flowsTable(flows.flows));
    for (const g of tpo.gateways) {
      out.push('', `gateway ${g.name} (udp ${g.listen}):`);
      out.push(
        table(
          ['peer', 'up', 'srtt ms', 'pacing Mbit/s', 'flows', 'retx'],
          g.peers.map((p) => [p.name, p.up ? 'yes' : 'no', p.srttMs ?? '-', p.pacingMbit ?? '-', p.flows, p.retransmissions]),
        ),
      );
    }
    return out.join('\n');
  });
}

const urlOption = () => new Option('--url <url>', `the daemon's API (default ${DEFAULT_API_URL})`);
const tokenOption = () =>
  new Option('--token-file <file>', 'API token file (default: where `sluice serve` puts it: $STATE_DIRECTORY, /var/lib/sluice or ~/.local/state/sluice)');
const opts = (o: { url?: string; tokenFile?: string; json?: boolean }): ClientOptions => ({
  ...(o.url !== undefined ? { url: o.url } : {}),
  ...(o.tokenFile !== undefined ? { tokenFile: o.tokenFile } : {}),
  json: Boolean(o.json),
});

/** `sluice flows` and `sluice subscribers add|rm`, for src/cli/main.ts. */
export function clientCommands(exit: (code: number) => void): Command[] {
  const flows = new Command('flows')
    .description('list the flows of a running `sluice serve` with their counters')
    .addOption(urlOption())
    .addOption(tokenOption())
    .option('--json', 'the API response as JSON')
    .action(async (o) => exit(await runFlows(opts(o))));
  const subscribers = new Command('subscribers').description('add or remove one subscriber of a replicate flow of a running `sluice serve`');
  for (const action of ['add', 'rm'] as const) {
    subscribers
      .command(`${action} <flow> <to>`)
      .description(action === 'add' ? 'add subscriber TO (udp://HOST:PORT) to FLOW' : 'remove subscriber TO (udp://HOST:PORT) from FLOW')
      .addOption(urlOption())
      .addOption(tokenOption())
      .option('--json', 'the flow afterwards, as JSON')
      .action(async (flow: string, to: string, o) => exit(await runSubscribers({ ...opts(o), action, flow, to })));
  }
  return [flows, subscribers];
}

/** `sluice status --url`: the daemon form of `sluice status`. */
export { urlOption, tokenOption };
