/**
 * The one-line `message` of the TpoGateway's failure events: what
 * happened, in the operator's terms, and where to look. A wrong key is
 * the classic case: the responder sees handshakes that do not
 * authenticate and says the keys differ; the initiator hears nothing and
 * says the peer does not answer, naming the likely causes.
 */
import type { HostPort } from './intercept/interception.js';
import type { HandshakeFailureReason } from './link/peer-link.js';
import type { PeerFlowsResetCause } from './gateway/events.js';
import { MAX_CLOCK_SKEW_MS } from '../wire/tpo/handshake.js';

const hostPort = (h: HostPort) => (h.address.includes(':') ? `[${h.address}]:${h.port}` : `${h.address}:${h.port}`);

export function handshakeFailureText(f: { readonly peer?: string; readonly from: string; readonly reason: HandshakeFailureReason }): string {
  const what = `handshake from ${f.from}${f.peer !== undefined ? ` for peer ${f.peer}` : ''}`;
  switch (f.reason) {
    case 'authentication':
      return `${what} failed authentication: the peers' keys differ (or the datagram was forged)`;
    case 'unknownKey':
      return `${what} uses a key id no peer here has: the peers' keyId settings differ (or it is a stranger)`;
    case 'roleConflict':
      return `${what}, which this side initiates to as well: both gateways were given the other's address; give peers[].address on one side only`;
    case 'stale':
      return `${what} is more than ${MAX_CLOCK_SKEW_MS / 1000} s off this host's clock: the gateways' clocks differ (or it is an old one replayed)`;
    case 'replayed':
      return `${what} repeats one already answered (a duplicate or a replay; harmless)`;
    case 'malformed':
      return `${what} does not decode (not a Sluice TPO gateway, or a damaged datagram)`;
    case 'unexpected':
      return `${what}: a response nothing here asked for (usually a late duplicate; harmless)`;
  }
}

export function peerUnreachableText(peer: string, address: string, attempts: number, sinceMs: number): string {
  return (
    `peer ${peer} at ${address} does not answer: ${attempts} handshakes unanswered in ${(sinceMs / 1000).toFixed(1)} s. ` +
    `Likely: the peers' keys or keyIds differ (the other gateway then logs failed handshakes from this one), ` +
    `a wrong address or port, UDP blocked on the way, or the peer is not running`
  );
}

export function peerFlowsResetText(peer: string, flows: number, cause: PeerFlowsResetCause): string {
  const why = cause === 'dead' ? 'it stayed down for limits.peerDeadMs' : cause === 'restarted' ? 'it restarted or said goodbye' : 'it was removed';
  return `${flows} flow${flows === 1 ? '' : 's'} with peer ${peer} reset: ${why}`;
}

interface FlowFailureFields {
  readonly reason: string;
  readonly role?: 'source' | 'destination';
  readonly tuple?: string;
  readonly peer?: string;
  readonly status?: string;
  readonly code?: string;
  readonly error?: unknown;
}

export function flowFailureText(f: FlowFailureFields, dst: HostPort | undefined): string {
  const flow = `flow ${f.tuple ?? '?'}`;
  const peer = f.peer ?? '?';
  const to = dst ? hostPort(dst) : 'the destination';
  switch (f.reason) {
    case 'connectFailed':
      return f.role === 'destination'
        ? `${flow} for peer ${peer}: connect to ${to} failed: ${f.code ?? f.status ?? 'error'}; the peer was told and resets its client`
        : `${flow}: the far gateway ${peer} could not connect to ${to} (${f.status ?? 'failed'}); the client was reset`;
    case 'openRefused':
      return `${flow}: the far gateway ${peer} refused it (${f.status ?? 'refused'}); the client was reset`;
    case 'noSession':
      return `${flow}: no session with peer ${peer} came up within limits.sessionWaitMs; the client was reset (is the peer reachable, are the keys the same?)`;
    case 'openTimeout':
      return `${flow}: the far gateway ${peer} did not answer its open within limits.openTimeoutMs; the client was reset`;
    case 'noRoute':
      return `${flow}: no peer serves ${to} (add a routes: entry, or name peers in the table entry); the client was refused`;
    case 'notAllowed':
      return `${flow} from peer ${peer}: ${to} is not in deliver.allow; refused`;
    case 'undeliverable':
      return `${flow}: an endpoint is no endpoint (port 0, broadcast, multicast, unspecified); refused`;
    case 'limit':
      return `${flow}: the flow table is full (limits.maxFlows); refused`;
    case 'sourceQuota':
      return `${flow}: its source holds limits.maxFlowsPerSource flows; refused`;
    case 'heldOverflow':
      return `${flow}: too much of it waited for a lost segment's repair; reset`;
    case 'windowExceeded':
      return `${flow}: peer ${peer} sent beyond the flow's window; reset`;
    case 'idle':
      return `${flow}: carried nothing for limits.tcpIdleMs; reset at both ends`;
    case 'error':
      return `a flow's handling failed: ${f.error instanceof Error ? f.error.message : String(f.error)}; that flow ended`;
    default:
      return `${flow}: ${f.reason}`;
  }
}
