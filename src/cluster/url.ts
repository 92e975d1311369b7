/**
 * `--cluster etcd://HOST:2379[,HOST:2379...]`: the store's endpoints.
 * Only etcd is spoken today; the scheme is there so that another store
 * can be named later without changing what users write.
 */
import { isIP } from 'node:net';

export interface ClusterUrl {
  /** `HOST:PORT` strings as the etcd client takes them. */
  readonly endpoints: readonly string[];
}

export type ClusterUrlResult = { ok: true; url: ClusterUrl } | { ok: false; reason: string };

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;

export function parseClusterUrl(text: string): ClusterUrlResult {
  const m = /^etcd:\/\/(.+)$/i.exec(text.trim());
  if (!m) return { ok: false, reason: `expected etcd://HOST:PORT[,HOST:PORT...], got '${text}'` };
  const endpoints: string[] = [];
  for (const part of m[1]!.replace(/\/+$/, '').split(',')) {
    const p = part.trim();
    const v6 = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(p);
    let host: string;
    let port: string;
    if (v6) {
      host = v6[1]!;
      port = v6[2] ?? '2379';
      if (isIP(host) !== 6) return { ok: false, reason: `'${host}' is not an IPv6 address` };
    } else {
      const colon = p.lastIndexOf(':');
      host = colon < 0 ? p : p.slice(0, colon);
      port = colon < 0 ? '2379' : p.slice(colon + 1);
      if (host.includes(':')) return { ok: false, reason: `IPv6 addresses need brackets: [${host}]` };
      if (isIP(host) === 0 && !HOSTNAME.test(host)) return { ok: false, reason: `'${host}' is not a host name or IP address` };
    }
    if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return { ok: false, reason: `port '${port}' is not a number from 1 to 65535` };
    endpoints.push(v6 ? `[${host}]:${port}` : `${host}:${port}`);
  }
  if (endpoints.length === 0) return { ok: false, reason: 'no endpoint' };
  return { ok: true, url: { endpoints } };
}
