/**
 * Run-time changes to a TPO gateway's config (TpoGateway.addPeer,
 * addTableEntry): one peer or table entry, validated with the config
 * file's own schema and checks (entries.ts), problems named by field
 * (PolicyValidationError, paths relative to the object: `key`,
 * `peers[0]`), and a clash with what the gateway has (a name or key id
 * taken) a ConflictError. The views are what the gateway reports back: the
 * config's own fields as the file writes them, never a key.
 */
import { ConflictError, PolicyValidationError, type PolicyIssue } from '../../errors.js';
import { isLoopbackAddress, type Endpoint } from '../../wire/endpoint.js';
import type { SourceRule } from '../../policy/source-filter.js';
import { describeIssue } from '../../policy/validate.js';
import { compileTableEntry, peerSchema, resolvePeer, tableEntrySchema, type PeerConfig, type TableEntry } from './entries.js';
import type { PortRange } from './intercept-rules.js';

/** A peer as the gateway reports it (the config's fields; the key is never shown). */
export interface TpoPeerView {
  readonly name: string;
  /** Where this side initiates to; absent: this side answers. */
  readonly address?: string;
  readonly keyId: number;
  /** Bits/s. */
  readonly maxRate?: number;
  readonly initialRate?: number;
  readonly mtu?: number;
}

/** A table entry as the config file writes it. */
export interface TpoTableEntryView {
  readonly name: string;
  readonly protocol: 'tcp' | 'udp' | 'icmp';
  readonly src?: string;
  readonly dst?: string;
  readonly srcPort?: number | string;
  readonly dstPort?: number | string;
  readonly peers: readonly string[];
  readonly domain: number;
  readonly latencySensitive?: boolean;
  readonly listen?: string;
  readonly target?: string;
}

const validationError = (issues: PolicyIssue[], what: string) => new PolicyValidationError(issues, what);

/** One peer to add: valid as in a config file, and neither its name nor its key id taken by `peers`. */
export function parsePeerChange(value: unknown, peers: readonly PeerConfig[], readKey: (path: string) => Buffer): PeerConfig {
  const parsed = peerSchema.safeParse(value);
  if (!parsed.success)
    throw validationError(
      parsed.error.issues.map((iss) => describeIssue(iss, value)),
      'invalid TPO peer',
    );
  const issues: PolicyIssue[] = [];
  const peer = resolvePeer(parsed.data, '', { names: new Set(), keyIds: new Set(), readKey, issues });
  if (issues.length || !peer) throw validationError(issues, 'invalid TPO peer');
  if (peers.some((p) => p.name === peer.name)) throw new ConflictError(`a peer named '${peer.name}' exists`);
  const sameId = peers.find((p) => p.keyId === peer.keyId);
  if (sameId) throw new ConflictError(`keyId ${peer.keyId} is peer '${sameId.name}''s (give each peer its own keyId)`);
  return peer;
}

/** One table entry to add, after `table`: valid as in a config file, naming peers the gateway has, its name not taken. */
export function parseTableEntryChange(
  value: unknown,
  mode: 'explicit' | 'transparent',
  peers: readonly PeerConfig[],
  table: readonly TableEntry[],
): TableEntry {
  const parsed = tableEntrySchema.safeParse(value);
  if (!parsed.success)
    throw validationError(
      parsed.error.issues.map((iss) => describeIssue(iss, value)),
      'invalid TPO table entry',
    );
  const issues: PolicyIssue[] = [];
  // After every entry there is (first match wins: a new entry comes last), with an index no entry has had.
  const index = table.reduce((n, e) => Math.max(n, e.index + 1), 0);
  const entry = compileTableEntry(parsed.data, index, '', { mode, peerNames: new Set(peers.map((p) => p.name)), entryNames: new Set(), issues });
  if (issues.length || !entry) throw validationError(issues, 'invalid TPO table entry');
  if (table.some((e) => e.name === entry.name)) throw new ConflictError(`a table entry named '${entry.name}' exists`);
  return entry;
}

const hostPort = (e: Endpoint) => (e.family === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`);
const prefix = (r: SourceRule) => (r.prefix === (r.family === 4 ? 32 : 128) ? r.address : `${r.address}/${r.prefix}`);
const ports = (r: PortRange) => (r.lo === r.hi ? r.lo : `${r.lo}-${r.hi}`);
const bits = (bytesPerSecond: number) => Math.round(bytesPerSecond * 8);

export function peerView(p: PeerConfig): TpoPeerView {
  return {
    name: p.name,
    ...(p.address ? { address: hostPort(p.address) } : {}),
    keyId: p.keyId,
    ...(p.maxRateBps !== undefined ? { maxRate: bits(p.maxRateBps) } : {}),
    ...(p.initialRateBps !== undefined ? { initialRate: bits(p.initialRateBps) } : {}),
    ...(p.mtu !== undefined ? { mtu: p.mtu } : {}),
  };
}

export function tableEntryView(e: TableEntry): TpoTableEntryView {
  // A listener other hosts reach serves everyone only when its entry said `src: any`.
  const anySource = !e.src && e.listen !== undefined && !isLoopbackAddress(e.listen.address);
  return {
    name: e.name,
    protocol: e.protocol,
    ...(e.src ? { src: prefix(e.src) } : anySource ? { src: 'any' } : {}),
    ...(e.dst ? { dst: prefix(e.dst) } : {}),
    ...(e.srcPorts ? { srcPort: ports(e.srcPorts) } : {}),
    ...(e.dstPorts ? { dstPort: ports(e.dstPorts) } : {}),
    peers: [...e.peers],
    domain: e.domain,
    ...(e.latencySensitive ? { latencySensitive: true } : {}),
    ...(e.listen ? { listen: hostPort(e.listen) } : {}),
    ...(e.target ? { target: hostPort(e.target) } : {}),
  };
}
