/**
 * The multi-host cluster lab of issue 21: a router namespace with a veth
 * to etcd, nodes n1..n4, a source and the subscribers (lab-topology.ts),
 * a real etcd in its namespace, and helpers to start, kill -9, partition
 * (from etcd only) and heal nodes, send numbered datagrams and record
 * what every subscriber received. Namespaces always go (netns.ts);
 * destroy() also removes the lab's temporary directory.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTopology, type NsProcess, type Topology } from '../netns/netns.js';
import { CLI } from '../process/cli.js';
import { LabCtl } from './lab-ctl-client.js';
import { startLabNode, nodeToken, type LabNode, type NodeOptions } from './lab-node.js';
import { parseDump, type Recording } from './lab-records.js';
import { ETCD_CLIENT_PORT, NODE_API_PORT, etcdUrl, labTopologySpec, leafAddress, type LabNodeName } from './lab-topology.js';

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const CTL = here('./lab-ctl.ts');
const SOURCE = here('./lab-source.ts');
const RECEIVER = here('./lab-receiver.ts');

/** Cluster key prefix (the agent's default). */
export const LAB_PREFIX = '/sluice/';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface SourceOptions {
  /** `host:port` targets; each datagram goes to all of them. */
  targets: readonly string[];
  rate: number;
  count: number;
  maxSeconds: number;
  size?: number;
  /** Namespace to send from (default `src`; a node's, to check a path from it). */
  ns?: 'src' | LabNodeName;
}

export class LabReceivers {
  #dumps = 0;
  readonly #dir: string;
  constructor(
    readonly proc: NsProcess,
    readonly ports: readonly number[],
    dir: string,
  ) {
    this.#dir = dir;
  }

  /** Everything received so far. */
  async recording(): Promise<Recording> {
    const path = join(this.#dir, `recv-${++this.#dumps}.json`);
    this.proc.writeLine(`dump ${path}`);
    await this.proc.waitForLine(new RegExp(`"ev":"dumped","path":"${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`), { timeoutMs: 20_000 });
    const rec = parseDump(readFileSync(path, 'utf8'));
    rmSync(path, { force: true });
    return rec;
  }

  /**
   * Wall-clock ms of the first datagram at `port` (from `from`, or from
   * anyone) at or after `since`, counting only datagrams that start a feed
   * (the first from that source after FEEDER_QUIET_MS of silence from it,
   * lab-receiver.ts). Waits up to `timeoutMs`.
   */
  async fedBy(port: number, from: string | undefined, since: number, timeoutMs = 30_000): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      for (const line of this.proc.stdoutLines) {
        if (!line.startsWith('{"ev":"feeder"')) continue;
        const e = JSON.parse(line) as { port: number; from: string; t: number };
        if (e.port === port && e.t >= since && (from === undefined || e.from === from)) return e.t;
      }
      if (Date.now() > end) throw new Error(`subscriber :${port} not fed by ${from ?? 'anyone'} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

export class ClusterLab {
  readonly nodes = new Map<LabNodeName, LabNode>();
  readonly #partitioned = new Set<LabNodeName>();

  private constructor(
    readonly topo: Topology,
    readonly dir: string,
    readonly etcd: NsProcess,
    readonly ctl: LabCtl,
  ) {}

  /** Builds the topology, starts etcd in its namespace and the store watcher. */
  static async create(): Promise<ClusterLab> {
    const topo = await createTopology(labTopologySpec());
    const dir = mkdtempSync(join(tmpdir(), 'sluice-lab-'));
    try {
      const url = `http://${leafAddress('etcd')}:${ETCD_CLIENT_PORT}`;
      const peer = 'http://127.0.0.1:2380';
      const etcd = topo.spawn('etcd', 'etcd', [
        '--name', 'lab',
        '--data-dir', join(dir, 'etcd'),
        '--listen-client-urls', url,
        '--advertise-client-urls', url,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `lab=${peer}`,
        '--initial-cluster-state', 'new',
      ]); // prettier-ignore
      await etcd.waitForLine(/ready to serve client requests/, { timeoutMs: 30_000 });
      const ctlProc = topo.runNode('etcd', CTL, [`${leafAddress('etcd')}:${ETCD_CLIENT_PORT}`, LAB_PREFIX], { stdin: 'pipe' });
      await ctlProc.waitForLine(/"ev":"ready"/, { timeoutMs: 60_000 });
      return new ClusterLab(topo, dir, etcd, new LabCtl(ctlProc));
    } catch (err) {
      await topo.destroy();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Starts a node (again, after a kill: same config, token and state files). */
  async startNode(name: LabNodeName, o: NodeOptions = {}): Promise<LabNode> {
    const node = await startLabNode(this.topo, this.dir, name, o);
    this.nodes.set(name, node);
    return node;
  }

  /** `kill -9` the node; resolves with the wall-clock ms of the kill once the process is gone. */
  async killNode(name: LabNodeName): Promise<number> {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`node ${name} was not started`);
    const t = performance.timeOrigin + performance.now();
    node.proc.signal('SIGKILL');
    await node.proc.processExited;
    return t;
  }

  /**
   * Cuts the node off from etcd and nothing else: the router drops what
   * goes between the two addresses (both ways, silently, as a failed link
   * would: the node's TCP connection sees no error, only silence), while
   * the node still reaches the other nodes and the subscribers.
   */
  async partitionFromEtcd(name: LabNodeName): Promise<number> {
    for (const [from, to] of this.#pairs(name)) await this.topo.ip('router', ['rule', 'add', 'pref', '100', 'from', from, 'to', to, 'blackhole']);
    this.#partitioned.add(name);
    return performance.timeOrigin + performance.now();
  }

  async healFromEtcd(name: LabNodeName): Promise<number> {
    for (const [from, to] of this.#pairs(name)) await this.topo.ip('router', ['rule', 'del', 'pref', '100', 'from', from, 'to', to, 'blackhole']);
    this.#partitioned.delete(name);
    return performance.timeOrigin + performance.now();
  }

  #pairs(name: LabNodeName): [string, string][] {
    const n = `${leafAddress(name)}/32`;
    const e = `${leafAddress('etcd')}/32`;
    return [
      [n, e],
      [e, n],
    ];
  }

  /** Subscribers: one socket per port on the `subs` namespace's address. */
  async startReceivers(ports: readonly number[]): Promise<LabReceivers> {
    const proc = this.topo.runNode('subs', RECEIVER, ['--bind', leafAddress('subs'), '--ports', ports.join(',')], { stdin: 'pipe' });
    await proc.waitForLine(/"ev":"ready"/, { timeoutMs: 60_000 });
    return new LabReceivers(proc, ports, this.dir);
  }

  /** Starts the source in `src`; resolves once it sends. Stop it with `.stop()` or let its bounds end it. */
  async startSource(o: SourceOptions): Promise<NsProcess> {
    const proc = this.topo.runNode(o.ns ?? 'src', SOURCE, [
      '--to', o.targets.join(','),
      '--rate', String(o.rate),
      '--count', String(o.count),
      '--max-seconds', String(o.maxSeconds),
      '--size', String(o.size ?? 200),
    ]); // prettier-ignore
    await proc.waitForLine(/"ev":"ready"/, { timeoutMs: 60_000 });
    return proc;
  }

  /** Runs `sluice ARGS... --cluster etcd://...` inside the etcd namespace (where the store is reachable). */
  async cli(args: readonly string[], timeoutMs = 90_000): Promise<CliRun> {
    const proc = this.topo.runNode('etcd', CLI, [...args, '--cluster', etcdUrl()]);
    const exit = await proc.waitExit(timeoutMs);
    return { code: exit.code, stdout: proc.stdout(), stderr: proc.stderr() };
  }

  /** `sluice cluster apply` of these flows; throws with the CLI's output unless it exits 0. */
  async applyFlows(flows: readonly unknown[], extra: readonly string[] = []): Promise<CliRun> {
    const file = join(this.dir, `flows-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify({ flows }, null, 2));
    const r = await this.cli(['cluster', 'apply', file, ...extra]);
    if (r.code !== 0) throw new Error(`sluice cluster apply exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
    return r;
  }

  /** GET a node's API (from the etcd namespace, through the router); the parsed JSON body. */
  async api(name: LabNodeName, path: string): Promise<unknown> {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`node ${name} was not started`);
    const body = await this.topo.exec('etcd', 'curl', [
      '-sS', '--fail-with-body', '--max-time', '10',
      '-H', `Authorization: Bearer ${nodeToken(node)}`,
      `http://${leafAddress(name)}:${NODE_API_PORT}${path}`,
    ]); // prettier-ignore
    return JSON.parse(body) as unknown;
  }

  /** Kills everything, deletes the namespaces and the temporary directory. */
  async destroy(): Promise<void> {
    try {
      this.ctl.proc.endInput();
      await this.topo.destroy();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** ClusterLab.create + try/finally destroy. */
export async function withClusterLab<T>(body: (lab: ClusterLab) => Promise<T>): Promise<T> {
  const lab = await ClusterLab.create();
  try {
    return await body(lab);
  } finally {
    await lab.destroy();
  }
}
