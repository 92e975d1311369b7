/**
 * A real three-member etcd cluster for tests (issue 21: "three members for
 * one test where an etcd member dies"), built from the members of
 * etcd-server.ts: all on 127.0.0.1, free client and peer ports, a static
 * `--initial-cluster`, one temporary directory holding every member's data
 * directory, removed by stop(). kill(i) is a `kill -9` of one member;
 * restart(i) starts it again on its data directory (it rejoins).
 *
 * Which member leads, and how many watch streams a member serves, come
 * from the members' HTTP side (the gRPC gateway's /v3/maintenance/status
 * and /metrics), so the harness needs no etcd client of its own.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { freePort, peerUrlOf, spawnEtcdMember, waitHealthy, type EtcdMemberSpec, type EtcdServer } from './etcd-server.js';

/** What one member says of itself (maintenance status). */
export interface EtcdMemberStatus {
  /** Its member id (decimal string, as etcd's JSON gives uint64s). */
  readonly memberId: string;
  /** The member id of the leader it follows ('0': none known). */
  readonly leaderId: string;
  readonly raftTerm: string;
  readonly revision: string;
}

export interface EtcdCluster {
  /** `127.0.0.1:PORT` of every member, in member order. */
  readonly endpoints: readonly string[];
  /** `etcd://H:P,H:P,H:P`, what `sluice serve --cluster` takes. */
  readonly url: string;
  readonly size: number;
  /** The member's current process (restart(i) replaces it). */
  member(i: number): EtcdServer;
  /** SIGKILL one member; its data directory stays (a crash). */
  kill(i: number): Promise<void>;
  /** Starts a killed member again on its data directory; resolves once it answers /health. */
  restart(i: number, options?: { readyTimeoutMs?: number }): Promise<void>;
  /** The member's maintenance status; rejects when it does not answer. */
  status(i: number): Promise<EtcdMemberStatus>;
  /**
   * Index of the leader, once every live member names the same live
   * leader; polls up to `timeoutMs` (default 20 s), then throws.
   */
  leader(timeoutMs?: number): Promise<number>;
  /** A label-less gauge or counter from the member's /metrics, or undefined. */
  metric(i: number, name: string): Promise<number | undefined>;
  /** Output of every member so far (for failure messages). */
  log(): string;
  /** Stops every member and removes every data directory; idempotent. */
  stop(): Promise<void>;
}

function httpText(url: string, method: 'GET' | 'POST', body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, timeout: 2000, headers: body !== undefined ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${url}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in 2 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Starts `size` (default 3) members at once and waits (up to `readyTimeoutMs`, default 30 s) until each answers /health. */
export async function startEtcdCluster(options: { size?: number; readyTimeoutMs?: number } = {}): Promise<EtcdCluster> {
  const size = options.size ?? 3;
  const root = mkdtempSync(join(tmpdir(), 'sluice-etcd3-'));
  const specs: EtcdMemberSpec[] = [];
  for (let i = 0; i < size; i++) {
    const dataDir = join(root, `m${i}`);
    mkdirSync(dataDir, { mode: 0o700 });
    specs.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), dataDir, clusterToken: `sluice-${basename(root)}` });
  }
  const initialCluster = specs.map((s) => `${s.name}=${peerUrlOf(s.peerPort)}`).join(',');
  const full = specs.map((s) => ({ ...s, initialCluster }));
  const members = full.map((s) => spawnEtcdMember(s));
  const ids: string[] = [];
  let stopped = false;
  const endpoints = members.map((m) => m.endpoint);

  const status = async (i: number): Promise<EtcdMemberStatus> => {
    const j = JSON.parse(await httpText(`${members[i]!.clientUrl}/v3/maintenance/status`, 'POST', '{}')) as {
      header?: { member_id?: string; raft_term?: string; revision?: string };
      leader?: string;
    };
    return { memberId: j.header?.member_id ?? '0', leaderId: j.leader ?? '0', raftTerm: j.header?.raft_term ?? '0', revision: j.header?.revision ?? '0' };
  };

  const cluster: EtcdCluster = {
    endpoints,
    url: `etcd://${endpoints.join(',')}`,
    size,
    member: (i) => members[i]!,
    kill: (i) => members[i]!.kill(),
    async restart(i, o = {}) {
      if (members[i]!.alive()) throw new Error(`etcd member ${i} is running`);
      // The dead handle is dropped, not stopped: its stop() would remove the data directory the new process uses.
      members[i] = spawnEtcdMember(full[i]!);
      await waitHealthy(members[i]!, Date.now() + (o.readyTimeoutMs ?? 30_000));
    },
    status,
    async leader(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      let seen = '';
      for (;;) {
        const live = members.map((m, i) => (m.alive() ? i : -1)).filter((i) => i >= 0);
        const said = await Promise.all(
          live.map((i) =>
            status(i).then(
              (s) => s.leaderId,
              () => '?',
            ),
          ),
        );
        seen = said.join(',');
        const at = ids.indexOf(said[0]!);
        if (at >= 0 && said.every((l) => l === said[0]) && members[at]!.alive()) return at;
        if (Date.now() > deadline) throw new Error(`no agreed live etcd leader in ${timeoutMs} ms (members say ${seen}; ids ${ids.join(',')})`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async metric(i, name) {
      const text = await httpText(`${members[i]!.clientUrl}/metrics`, 'GET');
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : undefined;
    },
    log: () => members.map((m, i) => `--- etcd member ${i} ---\n${m.log().slice(-2000)}`).join('\n'),
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(members.map((m) => m.stop()));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
    await Promise.all(members.map((m) => waitHealthy(m, deadline)));
    for (let i = 0; i < size; i++) ids.push((await status(i)).memberId);
  } catch (err) {
    const log = cluster.log();
    await cluster.stop();
    throw new Error(`${(err as Error).message}\n${log}`, { cause: err });
  }
  return cluster;
}
