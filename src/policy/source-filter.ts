import { BlockList, isIP } from 'node:net';
import { canonicalAddress, unmapAddress } from './endpoint.js';

/** One allowed-source rule: a prefix (an exact address is a /32 or /128). */
export interface SourceRule {
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefix: number;
}

/** Compiled allowed-source list. `any` must be asked for explicitly. */
export type SourceFilter = { readonly any: true } | { readonly any: false; readonly rules: readonly SourceRule[] };

export type SourceRuleParse = { ok: true; rule: SourceRule } | { ok: false; reason: string };

/** Parses `ADDRESS` or `ADDRESS/PREFIX` (IPv4 or IPv6). */
export function parseSourceRule(text: string): SourceRuleParse {
  const [addr, prefixText, extra] = text.trim().split('/');
  if (extra !== undefined) return { ok: false, reason: `'${text}' is not ADDRESS or ADDRESS/PREFIX` };
  const family = isIP(addr ?? '');
  if (family !== 4 && family !== 6) {
    return { ok: false, reason: `'${addr}' is not an IPv4 or IPv6 address` };
  }
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
      return { ok: false, reason: `prefix length '/${prefixText}' is out of range 0..${max} for IPv${family}` };
    }
    prefix = Number(prefixText);
  }
  return { ok: true, rule: { family, address: canonicalAddress(addr!), prefix } };
}

/**
 * Builds the per-packet predicate for a filter. node:net's BlockList does the
 * prefix matching; IPv4-mapped IPv6 senders (seen on dual-stack sockets) are
 * matched as the IPv4 address they are.
 */
export function createSourceMatcher(filter: SourceFilter): (address: string) => boolean {
  if (filter.any) return () => true;
  if (filter.rules.length === 0) return () => false;
  const list = new BlockList();
  for (const r of filter.rules) {
    list.addSubnet(r.address, r.prefix, r.family === 4 ? 'ipv4' : 'ipv6');
  }
  return (address: string) => {
    const a = unmapAddress(address);
    // A zone id (fe80::1%eth0) is not part of the address BlockList knows.
    const pct = a.indexOf('%');
    const ip = pct < 0 ? a : a.slice(0, pct);
    return list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
  };
}
