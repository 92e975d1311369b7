/**
 * One Sluice node of the lab: `sluice serve --cluster` (from source,
 * through tsx, as harness/process/cli.ts runs the CLI) inside the node's
 * namespace, with a minimal serve config: the API on the node's lab
 * address (so other namespaces can ask it GET /v1/cluster), its token and
 * state files in the lab's temporary directory, kept across a restart
 * as a real host's would be.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from '../process/cli.js';
import type { NsProcess, Topology } from '../netns/netns.js';
import { NODE_API_PORT, etcdUrl, leafAddress, type LabNodeName } from './lab-topology.js';

export interface NodeOptions {
  /** Default 'portable' (no kernel tier: the lab checks cluster behaviour, not speed). */
  tier?: 'portable' | 'batched';
  /** `--lease-ttl`; undefined: the agent's default (5 s). */
  leaseTtlS?: number;
  capacity?: number;
  /** More `serve` arguments. */
  extraArgs?: readonly string[];
  /** Wait for `cluster: joined as NAME` (default true). */
  waitJoined?: boolean;
  /** Bound on that wait (a cold tsx start on a loaded 2-core host takes > 15 s); default 90 s. */
  joinTimeoutMs?: number;
}

export interface LabNode {
  readonly name: LabNodeName;
  readonly address: string;
  readonly proc: NsProcess;
  /** Wall-clock ms at which the node logged that it joined (NaN if not awaited). */
  readonly joinedAt: number;
  readonly tokenFile: string;
  /** Log records (pino JSON lines on stderr) so far. */
  records(): Record<string, unknown>[];
}

/** Writes the node's serve config (JSON is YAML) once; returns its path. */
export function writeNodeConfig(dir: string, name: LabNodeName, tier: string): string {
  const path = join(dir, `${name}.serve.json`);
  if (!existsSync(path)) {
    const config = {
      tier,
      api: { listen: `${leafAddress(name)}:${NODE_API_PORT}`, tokenFile: join(dir, `${name}.token`) },
      state: join(dir, `${name}.state.json`),
      log: { level: 'info' },
    };
    writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`);
  }
  return path;
}

/** The serve arguments of a node (also what a test passes when it expects a refusal). */
export function serveArgs(config: string, name: LabNodeName, o: NodeOptions): string[] {
  return [
    'serve',
    '--config',
    config,
    '--cluster',
    etcdUrl(),
    '--node',
    name,
    '--address',
    leafAddress(name),
    '--tier',
    o.tier ?? 'portable',
    ...(o.leaseTtlS !== undefined ? ['--lease-ttl', String(o.leaseTtlS)] : []),
    ...(o.capacity !== undefined ? ['--capacity', String(o.capacity)] : []),
    ...(o.extraArgs ?? []),
  ];
}

function logRecords(proc: NsProcess): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of proc.stderrLines) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* not a log record */
    }
  }
  return out;
}

/** Starts the node; by default resolves once it logged that it joined the cluster. */
export async function startLabNode(topo: Topology, dir: string, name: LabNodeName, o: NodeOptions = {}): Promise<LabNode> {
  const config = writeNodeConfig(dir, name, o.tier ?? 'portable');
  const proc = topo.runNode(name, CLI, serveArgs(config, name, o));
  let joinedAt = NaN;
  if (o.waitJoined !== false) {
    const joined = new RegExp(`cluster: joined as ${name}\\b`);
    await proc.waitForLine(joined, { timeoutMs: o.joinTimeoutMs ?? 90_000 });
    joinedAt = Date.now();
  }
  return {
    name,
    address: leafAddress(name),
    proc,
    joinedAt,
    tokenFile: join(dir, `${name}.token`),
    records: () => logRecords(proc),
  };
}

/** The node's API token (created by serve at start). */
export function nodeToken(node: LabNode): string {
  return readFileSync(node.tokenFile, 'utf8').trim();
}
