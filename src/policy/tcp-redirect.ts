/**
 * The `tcp-redirect` policy (issue 22, part 2): connections accepted on
 * `listen` are each joined to a new connection to `to`, and the bytes move
 * between the two inside the kernel. Sources are filtered as UDP flows
 * are (`allow`, required); `maxConnections` bounds the joined pairs so a
 * flood of connections that never send holds a bounded set of sockets.
 * See docs/POLICY.md, "tcp-redirect".
 */
import { z } from 'zod';
import { parseEndpoint, type Endpoint } from '../wire/endpoint.js';
import { allowSchema } from './schema.js';
import { describeIssue } from './validate.js';
import { PolicyValidationError } from '../errors.js';

/** `tcp://HOST:PORT` (brackets for IPv6). */
export function formatTcpEndpoint(ep: Endpoint): string {
  return ep.family === 6 ? `tcp://[${ep.address}]:${ep.port}` : `tcp://${ep.address}:${ep.port}`;
}

function tcpEndpoint(opts: { allowPortZero: boolean }) {
  return z
    .union([z.string(), z.strictObject({ host: z.string(), port: z.number().int() })], {
      error: (iss) => (iss.input === undefined ? undefined : "expected 'tcp://HOST:PORT' or { host, port }"),
    })
    .transform((value, ctx): Endpoint => {
      let text: string;
      if (typeof value === 'string') {
        const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value.trim());
        if (scheme && scheme[1]!.toLowerCase() !== 'tcp') {
          ctx.addIssue({ code: 'custom', message: `unsupported scheme '${scheme[1]}://' (a tcp-redirect takes tcp://)`, input: value });
          return z.NEVER;
        }
        text = scheme ? value.trim().slice(scheme[0].length) : value;
      } else {
        text = value.host.includes(':') ? `[${value.host}]:${value.port}` : `${value.host}:${value.port}`;
      }
      const parsed = parseEndpoint(text, opts);
      if (!parsed.ok) {
        ctx.addIssue({ code: 'custom', message: parsed.reason.replaceAll('udp://', 'tcp://'), input: value });
        return z.NEVER;
      }
      return parsed.endpoint;
    });
}

/**
 * How the bytes move: `sockmap` (socket to socket inside the kernel, eBPF;
 * root), `splice` (through a pipe, in the kernel), `userspace` (node:net,
 * the reference), `auto` (splice where it works).
 */
export const TCP_RELAY_MODES = ['auto', 'sockmap', 'splice', 'userspace'] as const;
export type TcpRelayMode = (typeof TCP_RELAY_MODES)[number];
/** The path a running tcp-redirect uses (what `auto` became). */
export type TcpRelayPath = Exclude<TcpRelayMode, 'auto'>;

/** Most joined pairs one tcp-redirect may hold. */
export const MAX_TCP_CONNECTIONS = 65536;

export const tcpRedirectSchema = z.strictObject({
  type: z.literal('tcp-redirect'),
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'use 1-64 letters, digits, dot, underscore or dash, starting with a letter or digit')
    .optional(),
  /** Where clients connect; port 0 asks the OS for a free port. */
  listen: tcpEndpoint({ allowPortZero: true }),
  /** Where each accepted connection is joined to. */
  to: tcpEndpoint({ allowPortZero: false }),
  allow: allowSchema,
  /** Joined pairs at once (a connection beyond it is reset and counted as refused, overLimit). */
  maxConnections: z.number().int().min(1).max(MAX_TCP_CONNECTIONS).default(1024),
  /** Most time to reach `to`, ms; after it the client is reset and the attempt counted as upstreamFailed. */
  connectTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  mode: z.enum(TCP_RELAY_MODES).default('auto'),
  /** A pair that moves no byte either way for this long is closed (FIN both ways) and counted as idleClosed, ms. Default: never. */
  idleTimeoutMs: z.number().int().min(100).max(86_400_000).optional(),
});

export type TcpRedirectPolicy = z.input<typeof tcpRedirectSchema>;
export type TcpRedirectSpec = z.output<typeof tcpRedirectSchema>;

/** Validates a tcp-redirect policy; PolicyValidationError naming each bad field otherwise. */
export function parseTcpRedirect(input: unknown): TcpRedirectSpec {
  const r = tcpRedirectSchema.safeParse(input);
  if (r.success) return r.data;
  throw new PolicyValidationError(
    r.error.issues.map((iss) => describeIssue(iss, input)),
    'invalid tcp-redirect policy',
  );
}
