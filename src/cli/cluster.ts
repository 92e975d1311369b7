/**
 * `sluice cluster apply|delete|status --cluster etcd://…`: the cluster's
 * flows written to and read from the store directly, so that they work
 * with no node running (a new cluster) and with any node down. `status`
 * computes the plan as every node does (src/cluster/plan.ts): nodes with
 * their lease and load, flows, their active ingest, and the node each
 * subscriber is served from.
 */
import { Command } from 'commander';
import { PolicyValidationError } from '../index.js';
import { EtcdStore } from '../cluster/etcd-store.js';
import { checkClusterFlow, deleteClusterFlow, putClusterFlows, storedFlows } from '../cluster/flow-store.js';
import { DEFAULT_CLUSTER_PREFIX, normalizePrefix } from '../cluster/keys.js';
import { clusterStatus, type ClusterStatusView } from '../cluster/status.js';
import { StoreView } from '../cluster/store-view.js';
import { parseClusterUrl } from '../cluster/url.js';
import { readRegularFile } from '../fs/regular-file.js';
import { MAX_CONFIG_BYTES, parseYamlOrThrow } from '../policy/config.js';
import { EXIT, table } from './output.js';

interface StoreOptions {
  cluster: string;
  clusterPrefix: string;
}

function openStore(o: StoreOptions): { store: EtcdStore; prefix: string } {
  const parsed = parseClusterUrl(o.cluster);
  if (!parsed.ok) throw new PolicyValidationError([{ path: '--cluster', message: parsed.reason }], 'sluice cluster');
  return { store: new EtcdStore({ endpoints: parsed.url.endpoints, callTimeoutMs: 5000 }), prefix: normalizePrefix(o.clusterPrefix) };
}

async function withStore<T>(o: StoreOptions, body: (store: EtcdStore, prefix: string) => Promise<T>): Promise<T> {
  const { store, prefix } = openStore(o);
  try {
    return await body(store, prefix);
  } finally {
    store.close();
  }
}

/** A file of `flows: [...]` (YAML or JSON), each flow checked; every issue reported at once. */
export function readClusterFile(path: string): ReturnType<typeof checkClusterFlow>[] {
  const doc = parseYamlOrThrow(readRegularFile(path, { maxBytes: MAX_CONFIG_BYTES }).data.toString('utf8'), path) as { flows?: unknown } | null;
  if (typeof doc !== 'object' || doc === null || !Array.isArray(doc.flows))
    throw new PolicyValidationError([{ path: 'flows', message: 'required: a list of cluster flows' }], path);
  const issues: { path: string; message: string }[] = [];
  const flows = doc.flows.flatMap((f, i) => {
    try {
      return [checkClusterFlow(f, `flows[${i}]`)];
    } catch (err) {
      if (err instanceof PolicyValidationError) issues.push(...err.issues);
      else throw err;
      return [];
    }
  });
  const names = new Map<string, number>();
  flows.forEach((f, i) => {
    if (names.has(f.name)) issues.push({ path: `flows[${i}].name`, message: `'${f.name}' is also flows[${names.get(f.name)}]` });
    names.set(f.name, i);
  });
  if (issues.length) throw new PolicyValidationError(issues, path);
  return flows;
}

export function formatStatus(s: ClusterStatusView): string {
  const out: string[] = [`revision ${s.revision}`, '', 'NODES'];
  out.push(
    s.nodes.length
      ? table(
          ['node', 'address', 'tier', 'load', 'capacity', 'lease', 'since'],
          s.nodes.map((n) => [n.name, n.address, n.tier, n.load, n.capacity, n.lease ?? '-', n.startedAt]),
        )
      : '(no live node)',
  );
  out.push('', 'FLOWS');
  for (const f of s.flows) {
    const ingest = `${f.ingest.primary}${f.ingest.backup ? ` (backup ${f.ingest.backup})` : ''} port ${f.ingest.port}`;
    out.push(`${f.name}: ingest ${ingest}; active ${f.activeIngest ?? 'none (no live ingest node)'}; edges ${f.edges.join(', ') || '-'}`);
    out.push(
      table(
        ['subscriber', 'served by'],
        f.subscribers.map((x) => [x.to, x.node ?? '-']),
      ),
    );
  }
  if (!s.flows.length) out.push('(no flow)');
  if (s.refused.length) {
    out.push('', 'REFUSED');
    for (const r of s.refused) out.push(`${r.key}: ${r.reason}`);
  }
  return `${out.join('\n')}\n`;
}

function storeOptions(c: Command): Command {
  return c
    .requiredOption('--cluster <url>', 'the store: etcd://HOST:2379[,HOST:2379...]')
    .option('--cluster-prefix <prefix>', 'key prefix in etcd', DEFAULT_CLUSTER_PREFIX);
}

export function clusterCommand(exit: (code: number) => void): Command {
  const cmd = new Command('cluster').description('declare and inspect the flows of a Sluice cluster on etcd (docs/CLUSTER.md)');
  cmd.addCommand(
    storeOptions(new Command('apply'))
      .description('write the flows of FILE (YAML or JSON: flows: [...]) to the cluster; --prune deletes the stored flows FILE lacks')
      .argument('<file>')
      .option('--prune', 'delete stored flows that FILE does not list')
      .action(async (file: string, o: StoreOptions & { prune?: boolean }) => {
        const flows = readClusterFile(file);
        await withStore(o, async (store, prefix) => {
          await putClusterFlows(store, prefix, flows);
          const pruned: string[] = [];
          if (o.prune) {
            const keep = new Set(flows.map((f) => f.name));
            for (const f of await storedFlows(store, prefix)) if (!keep.has(f.name) && (await deleteClusterFlow(store, prefix, f.name))) pruned.push(f.name);
          }
          process.stdout.write(`applied ${flows.map((f) => f.name).join(', ') || 'nothing'}${pruned.length ? `; deleted ${pruned.join(', ')}` : ''}\n`);
        });
        exit(EXIT.OK);
      }),
  );
  cmd.addCommand(
    storeOptions(new Command('delete'))
      .description('delete a cluster flow')
      .argument('<name>')
      .action(async (name: string, o: StoreOptions) => {
        const gone = await withStore(o, (store, prefix) => deleteClusterFlow(store, prefix, name));
        process.stdout.write(gone ? `deleted ${name}\n` : `no cluster flow '${name}'\n`);
        exit(gone ? EXIT.OK : EXIT.FAILURE);
      }),
  );
  cmd.addCommand(
    storeOptions(new Command('status'))
      .description('nodes (lease, load), flows, and the node each subscriber is served from')
      .option('--json', 'print JSON')
      .action(async (o: StoreOptions & { json?: boolean }) => {
        const status = await withStore(o, async (store, prefix) => {
          const read = await store.getPrefix(prefix);
          const view = new StoreView(prefix);
          view.load(read.entries, read.revision);
          return clusterStatus(view, prefix);
        });
        process.stdout.write(o.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
        exit(EXIT.OK);
      }),
  );
  return cmd;
}
