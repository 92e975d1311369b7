/**
 * IP addresses as bytes: the conversions a data plane needs to compare
 * addresses the kernel writes (sockaddr) with addresses a policy names.
 * Pure; inputs are validated with node:net.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** a.b.c.d → unsigned 32-bit integer (network order value). */
export function ipv4ToInt(address: string): number {
  if (!isIPv4(address)) throw new TypeError(`not an IPv4 address: ${address}`);
  return address.split('.').reduce((acc, x) => ((acc << 8) | Number(x)) >>> 0, 0);
}

/** The 16 bytes of an IPv6 address (accepts `::`, embedded IPv4 and a %zone). */
export function ipv6Bytes(address: string): Uint8Array {
  const zone = address.indexOf('%');
  const text = zone < 0 ? address : address.slice(0, zone);
  if (!isIPv6(text)) throw new TypeError(`not an IPv6 address: ${address}`);
  const out = new Uint8Array(16);
  let head = text;
  let tailV4: number[] | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tailV4 = text
      .slice(lastColon + 1)
      .split('.')
      .map(Number);
    head = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [left, right] = head.split('::') as [string, string | undefined];
  const l = left ? left.split(':') : [];
  const r = right !== undefined && right !== '' ? right.split(':') : [];
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r];
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  if (tailV4) out.set(tailV4, 12);
  return out;
}

/** RFC 5952 text for 16 address bytes; IPv4-mapped as ::ffff:a.b.c.d (as Node prints it). */
export function formatIpv6(b: Uint8Array): string {
  if (b.length !== 16) throw new TypeError('an IPv6 address has 16 bytes');
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // The longest run of two or more zero groups becomes '::' (first if tied).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * A multicast group address: 224.0.0.0/4 or ff00::/8 (also an IPv4 group
 * written IPv4-mapped, which a dual-stack socket would send to as IPv4).
 * False for anything that is not an IP literal.
 */
export function isMulticastAddress(address: string): boolean {
  if (isIPv4(address)) return ipv4ToInt(address) >>> 28 === 0xe;
  const zone = address.indexOf('%');
  const text = zone < 0 ? address : address.slice(0, zone);
  if (!isIPv6(text)) return false;
  const b = ipv6Bytes(text);
  if (b[0] === 0xff) return true;
  return b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff && b[12]! >>> 4 === 0xe;
}
