/**
 * The lab's control client, run inside the etcd namespace (the test
 * process lives in the root namespace and cannot reach lab addresses):
 * watches the whole cluster prefix through Sluice's own store
 * (src/cluster/etcd-store.ts) and prints every change with its arrival
 * time, and on request writes or deletes keys and reads etcd's /metrics.
 *
 *   node --import tsx harness/cluster/lab-ctl.ts ENDPOINT PREFIX
 *
 * stdout, one JSON object a line; times are wall-clock ms with µs
 * resolution (performance.timeOrigin + now), comparable across the lab's
 * processes because they share the host's clock:
 *   {"ev":"ready","rev":"12"}                       watching from rev 13
 *   {"ev":"watch","t":..,"type":"put"|"delete","key":..,"value":..,"rev":".."}
 *   {"ev":"conn","t":..,"up":false|true}
 *   {"ev":"reply","id":N,"ok":true,"t":..,...}      answer to a stdin request
 * stdin requests: {"id":N,"op":"put","key":K,"value":V} | {"id":N,"op":"delete","key":K}
 *   | {"id":N,"op":"metrics"} (selected etcd counters, summed over labels but grpc_method).
 */
import { createInterface } from 'node:readline';
import { EtcdStore } from '../../src/cluster/etcd-store.js';

const [endpoint, prefix = '/sluice/'] = process.argv.slice(2);
if (!endpoint) {
  process.stderr.write('usage: lab-ctl.ts ENDPOINT [PREFIX]\n');
  process.exit(2);
}

const now = (): number => performance.timeOrigin + performance.now();
const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

/** Counters that say what the control plane costs: bytes on the client port, writes, watch events sent. */
const METRIC =
  /^(?<name>etcd_network_client_grpc_(?:sent|received)_bytes_total|etcd_debugging_mvcc_(?:put|delete|txn|events)_total|etcd_mvcc_(?:put|delete|txn)_total|grpc_server_msg_(?:sent|received)_total)(?<labels>\{[^}]*\})?\s+(?<value>\S+)$/;

async function metrics(): Promise<Record<string, number>> {
  const res = await fetch(`http://${endpoint}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  const sums: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const g = METRIC.exec(line)?.groups;
    if (!g) continue;
    // grpc_server_* per method (Put, Range, Watch, LeaseKeepAlive ...): which RPCs the traffic is.
    const method = /grpc_method="([^"]+)"/.exec(g.labels ?? '')?.[1];
    const name = g.name!.startsWith('grpc_server') && method ? `${g.name!}{${method}}` : g.name!;
    sums[name] = (sums[name] ?? 0) + Number(g.value);
  }
  return sums;
}

const store = new EtcdStore({ endpoints: [endpoint], callTimeoutMs: 5000 });
const first = await store.getPrefix(prefix);
for (const e of first.entries) out({ ev: 'watch', t: now(), type: 'put', key: e.key, value: e.value, rev: String(e.modRevision), initial: true });
await store.watchPrefix(prefix, first.revision + 1n, {
  event: (e) => out({ ev: 'watch', t: now(), type: e.type, key: e.key, ...(e.type === 'put' ? { value: e.value } : {}), rev: String(e.modRevision) }),
  error: (err) => {
    out({ ev: 'error', t: now(), message: err.message });
    process.exit(1);
  },
  connection: (up) => out({ ev: 'conn', t: now(), up }),
});
out({ ev: 'ready', rev: String(first.revision) });

interface Request {
  id: number;
  op: 'put' | 'delete' | 'metrics';
  key?: string;
  value?: string;
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let req: Request;
  try {
    req = JSON.parse(line) as Request;
  } catch {
    out({ ev: 'reply', id: -1, ok: false, error: `not JSON: ${line}` });
    return;
  }
  const answer = async (): Promise<Record<string, unknown>> => {
    if (req.op === 'put') return { rev: String(await store.put(req.key ?? '', req.value ?? '')) };
    if (req.op === 'delete') return { existed: await store.delete(req.key ?? '') };
    if (req.op === 'metrics') return { metrics: await metrics() };
    throw new Error(`unknown op ${String(req.op)}`);
  };
  const t0 = now();
  answer().then(
    (r) => out({ ev: 'reply', id: req.id, ok: true, t0, t: now(), ...r }),
    (err: unknown) => out({ ev: 'reply', id: req.id, ok: false, t: now(), error: err instanceof Error ? err.message : String(err) }),
  );
});
// stdin closed: the lab is done with us.
rl.on('close', () => {
  store.close();
  process.exit(0);
});
