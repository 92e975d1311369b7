/**
 * The live fan-out's configuration (issue 22, part 3): which UDP/RTP inputs
 * may be served, how a request path names one (udpxy's `/udp/GROUP:PORT`,
 * `/rtp/GROUP:PORT`, or a configured input's name), and the limits. Pure:
 * parsing and matching only, no sockets.
 *
 * Not an open proxy: a request may name only a configured input or an
 * address:port an `allow` rule covers (`CIDR`, `CIDR:PORT`,
 * `CIDR:PORT-PORT`, IPv6 as `[CIDR]:PORT`); by default nothing else.
 */
import { BlockList, isIP } from 'node:net';
import { canonicalAddress, parseEndpoint, type Endpoint } from '../../wire/endpoint.js';
import { PolicyValidationError, type PolicyIssue } from '../../errors.js';

export type InputProto = 'udp' | 'rtp';

/** One UDP input: where to receive (a group is joined), how to unwrap. */
export interface FanoutInput {
  /** `udp://239.1.1.1:1234`: equal inputs share one socket and pipe. */
  readonly key: string;
  readonly name?: string | undefined;
  readonly proto: InputProto;
  readonly endpoint: Endpoint;
  readonly multicast: boolean;
}

export interface AllowRule {
  readonly text: string;
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefix: number;
  readonly portLo: number;
  readonly portHi: number;
}

export interface FanoutLimits {
  /** Streaming clients at once (HTTP and TCP); more get 503 / a reset. Default 256. */
  readonly maxClients: number;
  /** Connections still sending their request line and headers; more are reset. Default 64. */
  readonly maxPending: number;
  /** A request must arrive whole within this (else 408). Default 5000 ms. */
  readonly headerTimeoutMs: number;
  /** Request line plus headers at most this many bytes (else 431). Default 8192. */
  readonly maxHeaderBytes: number;
  /** Each client's pipe (F_SETPIPE_SZ). Default 1 MiB. */
  readonly pipeBytes: number;
  /** Datagrams are gathered into chunks of about this size before the tee. Default 32 KiB. */
  readonly chunkBytes: number;
  /** A partial chunk is sent after at most this long. Default 10 ms. */
  readonly flushMs: number;
  /** A client that could take no chunk for this long is dropped. Default 5000 ms. */
  readonly dropAfterMs: number;
}

export const DEFAULT_LIMITS: FanoutLimits = {
  maxClients: 256,
  maxPending: 64,
  headerTimeoutMs: 5000,
  maxHeaderBytes: 8192,
  pipeBytes: 1 << 20,
  chunkBytes: 32 << 10,
  flushMs: 10,
  dropAfterMs: 5000,
};

function isMulticast(ep: Endpoint): boolean {
  if (ep.family === 4) {
    const first = Number(ep.address.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return canonicalAddress(ep.address).toLowerCase().startsWith('ff');
}

function formatKey(proto: InputProto, ep: Endpoint): string {
  const a = canonicalAddress(ep.address);
  return ep.family === 6 ? `${proto}://[${a}]:${ep.port}` : `${proto}://${a}:${ep.port}`;
}

/** An input from `udp://HOST:PORT` / `rtp://HOST:PORT` (or `HOST:PORT` with `proto`); a reason when it is not one. */
export function parseInput(text: string, name?: string, proto: InputProto = 'udp'): FanoutInput | string {
  let rest = text.trim();
  const scheme = /^(udp|rtp):\/\//i.exec(rest);
  if (scheme) {
    proto = scheme[1]!.toLowerCase() as InputProto;
    rest = rest.slice(scheme[0].length);
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) return `unsupported scheme in '${text}' (udp:// or rtp://)`;
  const p = parseEndpoint(rest);
  if (!p.ok) return p.reason;
  return { key: formatKey(proto, p.endpoint), ...(name ? { name } : {}), proto, endpoint: p.endpoint, multicast: isMulticast(p.endpoint) };
}

/** `CIDR`, `CIDR:PORT`, `CIDR:LO-HI`, `[V6CIDR]:PORT`; a reason when it is none. */
export function parseAllowRule(text: string): AllowRule | string {
  let net = text.trim();
  let ports = '';
  if (net.startsWith('[')) {
    const close = net.indexOf(']');
    if (close < 0) return `missing ']' in '${text}'`;
    ports = net.slice(close + 1);
    net = net.slice(1, close);
    if (ports !== '' && !ports.startsWith(':')) return `expected ':PORT' after ']' in '${text}'`;
    ports = ports.slice(1);
  } else if (!net.includes('::') && net.split(':').length === 2) {
    [net, ports] = net.split(':') as [string, string];
  }
  const [address, prefixText] = net.split('/') as [string, string | undefined];
  const family = isIP(address);
  if (family !== 4 && family !== 6) return `'${address}' is not an IP address`;
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return `prefix '/${prefixText}' out of range 0..${max}`;
  let portLo = 1;
  let portHi = 65535;
  if (ports !== '') {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(ports);
    if (!m) return `ports '${ports}' are not PORT or LO-HI`;
    portLo = Number(m[1]);
    portHi = m[2] === undefined ? portLo : Number(m[2]);
    if (portLo < 1 || portHi > 65535 || portLo > portHi) return `ports '${ports}' out of range 1..65535`;
  }
  return { text, family, address, prefix, portLo, portHi };
}

/** What a request path asks for. */
export type PathRequest =
  | { readonly kind: 'status' }
  | { readonly kind: 'input'; readonly input: FanoutInput }
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'bad'; readonly reason: string };

/** `/udp/239.1.1.1:1234`, `/rtp/[ff3e::1]:5000`, `/status`, `/NAME` (query strings ignored). */
export function parsePath(rawPath: string): PathRequest {
  const path = rawPath.split('?')[0]!.replace(/\/+$/, '');
  if (path === '/status') return { kind: 'status' };
  const m = /^\/(udp|rtp)\/(.+)$/i.exec(path);
  if (m) {
    let target: string;
    try {
      target = decodeURIComponent(m[2]!);
    } catch {
      return { kind: 'bad', reason: 'bad percent-encoding' };
    }
    // udpxy also writes GROUP%PORT as GROUP:PORT's stand-in for some players.
    const input = parseInput(target, undefined, m[1]!.toLowerCase() as InputProto);
    return typeof input === 'string' ? { kind: 'bad', reason: input } : { kind: 'input', input };
  }
  const name = /^\/([A-Za-z0-9_.-]{1,64})$/.exec(path);
  if (name) return { kind: 'name', name: name[1]! };
  return { kind: 'bad', reason: 'expected /udp/GROUP:PORT, /rtp/GROUP:PORT, /NAME or /status' };
}

/** Whether `input` may be served: a configured input's key, or covered by an allow rule. */
export function createInputMatcher(configured: readonly FanoutInput[], rules: readonly AllowRule[]): (input: FanoutInput) => boolean {
  const keys = new Set(configured.map((i) => i.key));
  const lists = rules.map((r) => {
    const list = new BlockList();
    list.addSubnet(r.address, r.prefix, r.family === 4 ? 'ipv4' : 'ipv6');
    return { r, list };
  });
  return (input) => {
    if (keys.has(input.key)) return true;
    const { address, port, family } = input.endpoint;
    return lists.some(
      ({ r, list }) => r.family === family && port >= r.portLo && port <= r.portHi && list.check(address.split('%')[0]!, family === 4 ? 'ipv4' : 'ipv6'),
    );
  };
}

/** Throws PolicyValidationError for unusable limits. */
export function checkLimits(l: FanoutLimits): void {
  const issues: PolicyIssue[] = [];
  const need = (ok: boolean, path: string, message: string) => {
    if (!ok) issues.push({ path, message });
  };
  need(Number.isInteger(l.maxClients) && l.maxClients >= 1, 'maxClients', 'an integer >= 1');
  need(Number.isInteger(l.maxPending) && l.maxPending >= 1, 'maxPending', 'an integer >= 1');
  need(l.headerTimeoutMs >= 10, 'headerTimeoutMs', '>= 10');
  need(l.maxHeaderBytes >= 256 && l.maxHeaderBytes <= 1 << 20, 'maxHeaderBytes', '256..1048576');
  need(l.chunkBytes >= 1024 && l.chunkBytes <= 256 << 10, 'chunkBytes', '1024..262144');
  need(l.pipeBytes >= 2 * (l.chunkBytes + 65536), 'pipeBytes', `at least 2 chunks with a largest datagram (${2 * (l.chunkBytes + 65536)} bytes)`);
  need(l.flushMs >= 0 && l.flushMs <= 1000, 'flushMs', '0..1000');
  need(l.dropAfterMs >= 10, 'dropAfterMs', '>= 10');
  if (issues.length > 0) throw new PolicyValidationError(issues, 'fan-out');
}
