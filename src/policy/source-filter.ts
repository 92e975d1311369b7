import { BlockList, isIP } from 'node:net';
import { ipv4ToInt, ipv6Bytes } from '../wire/ip-address.js';
import { canonicalAddress, unmapAddress } from '../wire/endpoint.js';

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

/**
 * The same predicate over a raw `struct sockaddr_in`/`sockaddr_in6` as the
 * kernel wrote it (family little-endian at +0, IPv4 address at +4, IPv6 at
 * +8), for data planes that never turn addresses into strings. IPv4-mapped
 * IPv6 senders match IPv4 rules, as in `createSourceMatcher`.
 */
export function createSockaddrMatcher(filter: SourceFilter): (bytes: Uint8Array, offset: number) => boolean {
  if (filter.any) return () => true;
  const v4: { net: number; mask: number }[] = [];
  const v6: { bytes: Uint8Array; prefix: number }[] = [];
  for (const r of filter.rules) {
    if (r.family === 4) {
      const mask = r.prefix === 0 ? 0 : (0xffffffff << (32 - r.prefix)) >>> 0;
      v4.push({ net: (ipv4ToInt(r.address) & mask) >>> 0, mask });
    } else {
      v6.push({ bytes: ipv6Bytes(r.address), prefix: r.prefix });
    }
  }
  // An IPv4 sender also matches IPv6 rules as its IPv4-mapped address
  // (::ffff:a.b.c.d), as node:net's BlockList does: ::/0 covers everyone.
  const mapped = new Uint8Array(16);
  mapped[10] = 0xff;
  mapped[11] = 0xff;
  const matchV4 = (a: number): boolean => {
    for (const r of v4) if ((a & r.mask) >>> 0 === r.net) return true;
    if (v6.length === 0) return false;
    mapped[12] = a >>> 24;
    mapped[13] = (a >>> 16) & 0xff;
    mapped[14] = (a >>> 8) & 0xff;
    mapped[15] = a & 0xff;
    for (const r of v6) if (prefixEquals(mapped, 0, r.bytes, r.prefix)) return true;
    return false;
  };
  return (b, o) => {
    const family = b[o]! | (b[o + 1]! << 8);
    if (family === 2) return matchV4(((b[o + 4]! << 24) | (b[o + 5]! << 16) | (b[o + 6]! << 8) | b[o + 7]!) >>> 0);
    if (family !== 10) return false;
    const a = o + 8;
    let isMapped = b[a + 10] === 0xff && b[a + 11] === 0xff;
    for (let i = 0; isMapped && i < 10; i++) if (b[a + i] !== 0) isMapped = false;
    if (isMapped) return matchV4(((b[a + 12]! << 24) | (b[a + 13]! << 16) | (b[a + 14]! << 8) | b[a + 15]!) >>> 0);
    for (const r of v6) if (prefixEquals(b, a, r.bytes, r.prefix)) return true;
    return false;
  };
}

function prefixEquals(b: Uint8Array, a: number, net: Uint8Array, prefix: number): boolean {
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (b[a + i] !== net[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[a + whole]! & mask) === (net[whole]! & mask);
}
