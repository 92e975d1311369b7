/**
 * `sluice doctor`: which tiers this host supports and why one is not, and
 * which paths a tcp-redirect can take here (splice needs the FFI; sockmap
 * needs root, cgroup v2 and the kernel's BTF, and is tried for real).
 */
import { probeTiers } from '../dataplane/tiers.js';
import { spliceUnavailable } from '../dataplane/tcp/splice-joiner.js';
import { sockmapUnavailable } from '../dataplane/tcp/sockmap-program.js';
import { emitJson, table } from './output.js';

export async function runDoctor(o: { json?: boolean }): Promise<void> {
  const probes = await probeTiers();
  const noSplice = spliceUnavailable();
  const noSockmap = process.getuid?.() === 0 ? sockmapUnavailable() : 'needs root (CAP_BPF and CAP_NET_ADMIN)';
  const tcp = [
    { path: 'splice', available: !noSplice, detail: noSplice ?? 'socket → pipe → socket in a worker thread (auto picks it)' },
    { path: 'sockmap', available: !noSockmap, detail: noSockmap ?? 'socket to socket in the kernel (sk_skb verdict); opt-in: --tcp-path sockmap' },
    { path: 'userspace', available: true, detail: 'node:net streams' },
  ];
  if (o.json) {
    emitJson('doctor', { tiers: probes, tcpRedirect: tcp });
    return;
  }
  process.stdout.write(
    `${table(
      ['tier', 'available', 'detail'],
      probes.map((p) => [p.tier, p.available ? 'yes' : 'no', p.detail]),
    )}\n`,
  );
  for (const p of probes.filter((x) => x.notes?.length)) {
    process.stdout.write(`\n${p.tier}:\n${p.notes!.map((n) => `  ${n}`).join('\n')}\n`);
  }
  process.stdout.write(
    `\n${table(
      ['tcp-redirect path', 'available', 'detail'],
      tcp.map((t) => [t.path, t.available ? 'yes' : 'no', t.detail]),
    )}\n`,
  );
}
