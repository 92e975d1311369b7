import { isIP } from 'node:net';

/** A UDP endpoint with an IP literal host. `port` 0 means "any free port" (listen only). */
export interface Endpoint {
  readonly family: 4 | 6;
  /** IP literal, IPv6 without brackets (a zone id such as `%eth0` is kept). */
  readonly address: string;
  readonly port: number;
}

/** Result of parsing user input: an endpoint, or the reason it is not one. */
export type EndpointParse = { ok: true; endpoint: Endpoint } | { ok: false; reason: string };

/**
 * Parses `udp://HOST:PORT`, `HOST:PORT`, `udp://[IPV6]:PORT` or `[IPV6]:PORT`.
 * Only IP literals are accepted: a relay that resolves names at run time
 * would forward to whatever DNS says next, which is not a policy.
 */
export function parseEndpoint(input: string, opts: { allowPortZero?: boolean } = {}): EndpointParse {
  let rest = input.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(rest);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'udp') {
      return { ok: false, reason: `unsupported scheme '${scheme[1]}://' (only udp:// is supported)` };
    }
    rest = rest.slice(scheme[0].length);
  }
  if (rest.endsWith('/')) rest = rest.slice(0, -1);
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return { ok: false, reason: `missing ']' in IPv6 address '${input}'` };
    host = rest.slice(1, close);
    if (rest[close + 1] !== ':') return { ok: false, reason: `expected ':PORT' after ']' in '${input}'` };
    portText = rest.slice(close + 2);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) return { ok: false, reason: `expected HOST:PORT, got '${input}'` };
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(':')) {
      return { ok: false, reason: `IPv6 addresses need brackets: udp://[${host}]:${portText}` };
    }
  }
  const family = isIP(host.split('%')[0] ?? '');
  if (family !== 4 && family !== 6) {
    return { ok: false, reason: `host '${host}' is not an IPv4 or IPv6 address literal (names are not resolved)` };
  }
  if (!/^\d{1,5}$/.test(portText)) return { ok: false, reason: `port '${portText}' is not a number` };
  const port = Number(portText);
  const min = opts.allowPortZero ? 0 : 1;
  if (port < min || port > 65535) return { ok: false, reason: `port ${port} is out of range ${min}..65535` };
  return { ok: true, endpoint: { family, address: host, port } };
}

/** Endpoint as callers may give it: `udp://HOST:PORT` text or `{ host, port }`. */
export type EndpointInput = string | { host: string; port: number };

/** Parses either input form (see parseEndpoint). */
export function parseEndpointInput(input: EndpointInput, opts: { allowPortZero?: boolean } = {}): EndpointParse {
  if (typeof input === 'string') return parseEndpoint(input, opts);
  return parseEndpoint(input.host.includes(':') ? `[${input.host}]:${input.port}` : `${input.host}:${input.port}`, opts);
}

/** Formats an endpoint as `udp://HOST:PORT` (brackets for IPv6). */
export function formatEndpoint(ep: Endpoint): string {
  return ep.family === 6 ? `udp://[${ep.address}]:${ep.port}` : `udp://${ep.address}:${ep.port}`;
}

/** Stable key for comparing endpoints (case-insensitive IPv6, canonical form). */
export function endpointKey(ep: Endpoint): string {
  return `${ep.family}/${canonicalAddress(ep.address)}/${ep.port}`;
}

/** True for 0.0.0.0 and ::, the "every local address" binds. */
export function isWildcard(ep: Endpoint): boolean {
  const a = canonicalAddress(ep.address);
  return a === '0.0.0.0' || a === '::';
}

/**
 * Canonical text form of an IP literal, so that `::1`, `0:0::1` and `::0001`
 * compare equal. Uses URL's IPv6 serializer, which implements RFC 5952.
 */
export function canonicalAddress(address: string): string {
  const [ip, zone] = address.split('%') as [string, string | undefined];
  if (isIP(ip) !== 6) return address;
  const canon = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  return zone ? `${canon}%${zone}` : canon;
}

/** Strips the IPv4-mapped prefix that dual-stack sockets report (`::ffff:1.2.3.4` → `1.2.3.4`). */
export function unmapAddress(address: string): string {
  return address.length > 7 && address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** A loopback address (127.0.0.0/8, ::1, or 127/8 IPv4-mapped): reachable from this host only. */
export function isLoopbackAddress(address: string): boolean {
  const a = unmapAddress(canonicalAddress(address));
  return a.startsWith('127.') || a === '::1';
}
