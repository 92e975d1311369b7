/* eslint-disable max-lines -- one class owns every TPO flow's lifecycle and the private maps (flows, peers, admission, sequencer) that source side, destination side and message routing all change */
/**
 * A TPO gateway (issue #7): the peer links to other gateways, the flows it
 * carries for its own applications (source side) and the flows it
 * delivers for its peers (destination side). One gateway is usually both.
 *
 *   interception ──'tcp'/'udp'──▶ route table ──▶ TcpEdge / UdpEdge (source)
 *                                                    │ messages
 *                                                    ▼
 *                                   PeerLink (packet driver + data mover) ══ WAN ══▶ peer gateway
 *                                                    │ messages
 *                                                    ▼
 *                           (peer, 5-tuple) ──▶ edge (reply to the source side)
 *                                          └──▶ new TcpEdge / UdpEdge (destination side)
 *
 * Messages are routed to flows by (peer, 5-tuple): both gateways name a
 * flow by the tuple the source side intercepted. A message for no known
 * flow that would need one (a peer restarted and lost it) is answered
 * with a reset, so neither side waits for a flow that is gone.
 *
 * The destination side opens connections only for authenticated peers
 * (the pair's key) and only to addresses `deliver.allow` lists: a gateway
 * is not an open proxy.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { createSourceMatcher } from '../../policy/source-filter.js';
import type { CarriedMessage } from '../../wire/tpo/driver-buffer.js';
import type { TpoConfig, PeerConfig } from '../config/config.js';
import { PeerLink, type HandshakeFailureReason } from '../link/peer-link.js';
import type { PeerUnreachable } from '../link/unanswered.js';
import { openDatagramPort, type DatagramPort, type DatagramSource } from '../io/datagram-port.js';
import { PortDemux } from '../link/port-demux.js';
import { markedTcpSocket } from '../../sys/socket-options.js';
import { resetSocket, type Interception, type TcpIntercepted, type UdpIntercepted } from '../intercept/interception.js';
import { message, oneFamily, STATUS, statusOfError, tupleKey, type CarriedFlow, type EdgeFailReason, type FlowHost, type FlowTuple } from './flow.js';
import { buildStatus, newCounters, type GatewayCounters, type GatewayStatus } from './status.js';
import { RouteTable } from './routes.js';
import { FlowSequencer } from './flow-sequencer.js';
import { TcpEdge } from './tcp-edge.js';
import { UdpEdge } from './udp-edge.js';
import { undeliverable } from './destination.js';
import { FlowAdmission } from './flow-admission.js';
import type { FlowFailDetail, GatewayEvents, PeerFlowsResetCause } from './events.js';
import { SessionWait } from './session-wait.js';

interface Peer {
  readonly config: PeerConfig;
  readonly link: PeerLink;
  /** The link's view of the shared port (the demux forgets it when the peer is removed). */
  readonly view: DatagramPort;
  readonly flows: Set<CarriedFlow>;
  deadTimer: NodeJS.Timeout | undefined;
  /** Where the next drain starts resuming flows (round robin). */
  drainCursor: number;
}

/** A UDP flow quiet this long may be evicted to make room for a new flow (flow-admission.ts). */
export const UDP_EVICT_IDLE_MS = 1000;

/** What a held message costs beyond its data (its header and objects), for the sequencer's byte bounds. */
const HELD_MESSAGE_OVERHEAD = 128;

/** What one read from an application's socket may hand over (libuv reads up to 64 KiB). */
const READ_CHUNK = 64 * 1024;

export interface GatewayOptions {
  /** Interception for the source side (explicit listeners, transparent rules); none: destination only. */
  readonly interception?: Interception;
  readonly interceptionName?: string;
  /** Peer-link I/O: default 'auto' (batched where available). */
  readonly io?: 'auto' | 'batched' | 'portable';
  /**
   * SO_MARK for the gateway's own sockets (its peer port, the connections
   * and sockets the destination side opens), so transparent interception
   * never takes the gateway's own traffic. Needs CAP_NET_ADMIN; unset: none.
   */
  readonly mark?: number;
}

export class Gateway extends EventEmitter<GatewayEvents> implements FlowHost {
  readonly config: TpoConfig;
  readonly counters: GatewayCounters = newCounters();
  readonly #port: DatagramPort;
  readonly #demux: PortDemux;
  readonly #peers = new Map<string, Peer>();
  /** Flows by `${peer}|${tuple}` (a fan-out flow is there once per peer). */
  readonly #flows = new Map<string, CarriedFlow>();
  readonly #all = new Set<CarriedFlow>();
  /** Per-source quotas and the table limit, with quiet UDP flows evicted first. */
  readonly #admission: FlowAdmission<CarriedFlow>;
  #routes: RouteTable;
  /** Clients waiting for a session with their peer (limits.sessionWaitMs). */
  readonly #sessionWait: SessionWait<CarriedFlow>;
  readonly #allowed: (address: string) => boolean;
  readonly #interception: Interception | undefined;
  readonly #interceptionName: string;
  readonly #mark: number | undefined;
  #closing = false;
  #closed = false;
  /** Restores each flow's message order (the links hand buffers over as they complete). */
  readonly #sequencer: FlowSequencer<{ peer: Peer; domain: number; m: CarriedMessage }>;
  readonly #sweep: NodeJS.Timeout;

  private constructor(config: TpoConfig, port: DatagramPort, options: GatewayOptions) {
    super();
    this.config = config;
    this.#port = port;
    this.#demux = new PortDemux(port, {
      // No responder has the key id: unknown here, or the peer with it is one this side initiates to (both were given addresses).
      onUnclaimedInitiation: (from, initiator) => this.#handshakeFailure(initiator, initiator === undefined ? 'unknownKey' : 'roleConflict', from),
    });
    this.#routes = new RouteTable(
      config.routes,
      config.peers.map((p) => p.name),
    );
    this.#sessionWait = new SessionWait(config.limits.sessionWaitMs, (flow, peer) => this.#noSession(flow, peer));
    this.#allowed = createSourceMatcher({ any: false, rules: [...config.deliver.allow] });
    this.#interception = options.interception;
    this.#interceptionName = options.interceptionName ?? (options.interception ? 'custom' : 'none');
    this.#mark = options.mark;
    this.#admission = new FlowAdmission({
      maxFlows: config.limits.maxFlows,
      maxFlowsPerSource: config.limits.maxFlowsPerSource,
      evictIdleMs: UDP_EVICT_IDLE_MS,
    });
    this.#sequencer = new FlowSequencer({
      deliver: (key, x) => this.#onMessage(x.peer, x.domain, x.m, key),
      // Messages for a flow whose start never came: the flow is unknown here (the peer thinks otherwise).
      onOrphans: (_key, items) => {
        // One answer per flow, however many of its messages waited.
        this.counters.unknownFlow += items.length - 1;
        const x = items.find((i) => i.m.header.function !== 'window' && i.m.header.function !== 'close') ?? items[0]!;
        this.#unknownFlow(x.peer, x.domain, x.m);
      },
      // Held messages are bounded per flow and per peer (flow-sequencer.ts); a flow over them is reset, and its peer told.
      groupOf: (key) => key.slice(0, key.lastIndexOf('|')),
      sizeOf: (x) => x.m.data.length + HELD_MESSAGE_OVERHEAD,
      // A copy: the message is a view into its whole driver buffer, which a held view would keep alive.
      hold: (x) => ({ peer: x.peer, domain: x.domain, m: { header: x.m.header, data: x.m.data.slice() } }),
      onOverflow: (key, x) => {
        this.counters.heldOverflow++;
        const flow = this.#flows.get(key);
        const tuple: FlowTuple = flow?.tuple ?? { protocol: x.m.header.protocol, src: x.m.header.src, dst: x.m.header.dst };
        this.emit('flow-fail', 'heldOverflow', flow?.role ?? 'destination', tuple, x.peer.config.name);
        if (flow) flow.resetBranch(x.peer.config.name, STATUS.limit);
        else this.#refuse(x.peer, x.domain, tuple, 'reset', STATUS.limit);
      },
    });
    // The port's receive thread died (batched) or its socket failed: the gateway can no longer hear its peers.
    // Unheard, an 'error' would end the process with a stack trace; 'fault' lets the owner stop it with a message.
    port.on('error', (err) => this.emit('fault', err));
    this.#sweep = setInterval(() => {
      this.#sequencer.sweep();
      this.#closeIdleTcp();
    }, 500);
    this.#sweep.unref();
    for (const p of config.peers) this.addPeer(p);
    if (this.#interception) {
      this.#interception.on('tcp', (c) => this.#interceptTcp(c));
      this.#interception.on('udp', (d) => this.#interceptUdp(d));
    }
  }

  /** Binds the peer socket and starts the links; the interception is the caller's (it owns its rules). */
  static async start(config: TpoConfig, options: GatewayOptions = {}): Promise<Gateway> {
    // The batched tier's I/O where the host has it (sendmmsg/GSO, recvmmsg in a thread), node:dgram elsewhere.
    // Bulk transfers at WAN rates need more than the default socket buffers (bursts of acks and data).
    const port = await openDatagramPort({
      family: config.listen.family,
      bind: { address: config.listen.address, port: config.listen.port },
      io: options.io ?? 'auto',
      socketBufferBytes: 8 << 20,
      ...(options.mark ? { mark: options.mark } : {}),
    });
    return new Gateway(config, port, options);
  }

  /** The UDP address the peer links use. */
  address(): { address: string; port: number } {
    return this.#port.address();
  }

  /** 'batched' or 'portable' (and why not batched). */
  get io(): { kind: string; fallbackReason?: string } {
    return { kind: this.#port.kind, ...(this.#port.fallbackReason ? { fallbackReason: this.#port.fallbackReason } : {}) };
  }

  /** Starts a link to a new peer (an initiator starts its handshake at once); routes that name it apply from now. */
  addPeer(p: PeerConfig): void {
    if (this.#closing) throw new Error('the gateway is closing');
    if (this.#peers.has(p.name)) throw new Error(`a peer named '${p.name}' exists`);
    const role = p.address ? 'initiator' : 'responder';
    // The demux asks the link, through this holder, at every datagram: its connection ids change per session.
    const holder: { link?: PeerLink } = {};
    const view = this.#demux.view({
      ownsConnection: (id: number) => holder.link?.ownsConnection(id) ?? false,
      keyId: p.keyId,
      role,
      name: p.name,
      ...(p.address ? { peer: { address: p.address.address, port: p.address.port } } : {}),
    });
    const link = new PeerLink({
      port: view,
      role,
      psk: p.key,
      keyId: p.keyId,
      ...(p.address ? { peer: { address: p.address.address, port: p.address.port } } : {}),
      ...(p.mtu !== undefined ? { mtu: p.mtu } : {}),
      // Buffers as they complete, not in send order: flows do not wait for each other's repairs (flow-sequencer.ts).
      mover: {
        orderedDelivery: false,
        ...(p.maxRateBps ? { maxRateBps: p.maxRateBps } : {}),
        ...(p.initialRateBps ? { initialRateBps: p.initialRateBps } : {}),
      },
    });
    holder.link = link;
    const peer: Peer = { config: p, link, view, flows: new Set(), deadTimer: undefined, drainCursor: 0 };
    this.#peers.set(p.name, peer);
    // A removed peer's link lives on for a moment (its resets leave): nothing it hears may make flows or events.
    const current = () => this.#peers.get(p.name) === peer;
    link.on('message', (domain: number, m: CarriedMessage) => {
      if (current()) this.#sequencer.push(`${p.name}|${tupleKey(m.header)}`, m.header, { peer, domain, m });
    });
    link.on('drain', () => this.#onDrain(peer));
    link.on('handshake-failure', (reason: HandshakeFailureReason, from: DatagramSource) => this.#handshakeFailure(p.name, reason, from));
    link.on('unreachable', (r: PeerUnreachable) => {
      if (current()) this.emit('peer-unreachable', p.name, r);
    });
    // A replaced session lost data in flight: every flow with this peer is broken.
    link.on('reset', () => this.#abortPeer(peer, STATUS.resetByPeer, 'restarted'));
    link.on('down', () => {
      if (peer.deadTimer || !current()) return;
      peer.deadTimer = setTimeout(() => {
        peer.deadTimer = undefined;
        this.#abortPeer(peer, STATUS.timedOut, 'dead');
      }, this.config.limits.peerDeadMs);
      peer.deadTimer.unref();
      this.emit('peer-down', p.name);
    });
    const up = () => {
      if (!current()) return;
      if (peer.deadTimer) clearTimeout(peer.deadTimer);
      peer.deadTimer = undefined;
      this.#sessionWait.release(p.name);
      this.emit('peer-up', p.name);
    };
    link.on('up', up);
    link.on('session', up);
    this.#routes = this.#routeTable();
  }

  /**
   * Ends a peer: every flow with it is reset (its applications get an RST,
   * the peer a reset), the resets get a moment to leave, then the link
   * says goodbye and closes. Routes that name it no longer apply. Returns
   * the number of flows reset and whether a session was up, or undefined
   * when there is no such peer.
   */
  async removePeer(name: string): Promise<{ flowsReset: number; wasUp: boolean } | undefined> {
    const peer = this.#peers.get(name);
    if (!peer || this.#closing) return undefined;
    const wasUp = peer.link.up;
    const flows = [...peer.flows];
    for (const f of flows) f.resetBranch(name, STATUS.other);
    if (flows.length) this.emit('peer-flows-reset', name, flows.length, 'removed');
    peer.link.flush();
    // No new flow goes to it from here; what is queued leaves in the moment below.
    this.#peers.delete(name);
    this.#sessionWait.release(name);
    if (peer.deadTimer) clearTimeout(peer.deadTimer);
    this.#routes = this.#routeTable();
    await new Promise((r) => setTimeout(r, 50));
    peer.link.close(!this.#closed);
    this.#demux.remove(peer.view);
    return { flowsReset: flows.length, wasUp };
  }

  /** The route table for the peers there are now (routes naming a removed peer are left out until it is back). */
  #routeTable(): RouteTable {
    return new RouteTable(
      this.config.routes.filter((r) => this.#peers.has(r.peer)),
      [...this.#peers.keys()],
    );
  }

  /**
   * The link has room: paused flows read from their applications again, but
   * only as many as the room takes (a socket hands over up to 64 KiB at a
   * time), starting where the last drain stopped: resuming every paused
   * flow at once would overfill the link's short queue many times over,
   * and the same flows would always go first.
   */
  #onDrain(peer: Peer): void {
    const mover = peer.link.mover;
    const flows = [...peer.flows];
    if (!mover || !flows.length) return;
    let budget = Math.max(1, Math.ceil(mover.roomBytes / READ_CHUNK));
    const start = peer.drainCursor % flows.length;
    let i = 0;
    for (; i < flows.length && budget > 0; i++) {
      if (flows[(start + i) % flows.length]!.onPeerDrain(peer.config.name)) budget--;
    }
    peer.drainCursor = start + i;
    // Flows may still be waiting: ask for the next drain even if these send little.
    if (i < flows.length) mover.requestDrain();
  }

  #abortPeer(peer: Peer, status: number, cause: PeerFlowsResetCause): void {
    const flows = [...peer.flows];
    for (const f of flows) f.abort(peer.config.name, status);
    if (flows.length) this.emit('peer-flows-reset', peer.config.name, flows.length, cause);
  }

  /** A client waited limits.sessionWaitMs for a session with `peer` that did not come: reset, and said why. */
  #noSession(flow: CarriedFlow, peer: string): void {
    if (!this.#all.has(flow) || this.#peers.get(peer)?.link.up) return;
    this.counters.noSession++;
    this.emit('flow-fail', 'noSession', flow.role, flow.tuple, peer);
    flow.resetBranch(peer, STATUS.unreachable);
  }

  // ---- FlowHost ----

  send(peer: string, domain: number, m: CarriedMessage, urgent = false): boolean {
    const p = this.#peers.get(peer);
    if (!p || this.#closed) return false;
    try {
      return p.link.send(domain, m, urgent);
    } catch (err) {
      // A message the link cannot take (a UDP datagram larger than a driver buffer holds, ~32 KiB) is
      // dropped and counted here: the edge's socket handler that sent it must not throw (it would end the process).
      this.counters.unsendable++;
      this.emit('flow-error', err);
      return false;
    }
  }

  hasRoom(peer: string, kind: 'stream' | 'datagram' | 'urgent' = 'stream'): boolean {
    const mover = this.#peers.get(peer)?.link.mover;
    if (!mover) return false;
    return kind === 'urgent' ? mover.hasRoomForUrgent : kind === 'datagram' ? mover.hasRoomForDatagram : mover.hasRoom;
  }

  requestDrain(peer: string): void {
    this.#peers.get(peer)?.link.mover?.requestDrain();
  }

  forget(flow: CarriedFlow): void {
    if (!this.#all.delete(flow)) return;
    this.#admission.remove(flow);
    for (const b of flow.branches) {
      this.#flows.delete(`${b.peer}|${tupleKey(flow.tuple)}`);
      this.#sequencer.forget(`${b.peer}|${tupleKey(flow.tuple)}`);
      this.#peers.get(b.peer)?.flows.delete(flow);
      this.#sessionWait.forget(flow, b.peer);
    }
  }

  active(flow: CarriedFlow): void {
    this.#admission.touch(flow);
  }

  /**
   * Who a flow counts against: the client address (source side), or the
   * client address behind the peer that sent it (destination side: two
   * sites may use the same private addresses).
   */
  static #source(role: 'source' | 'destination', tuple: FlowTuple, peer?: string): string {
    return role === 'source' ? tuple.src.address : `${peer}|${tuple.src.address}`;
  }

  /** May a new flow of `source` (the flow `tuple` on side `role`) be made? Quiet UDP flows make room first; a refusal is counted. */
  #admit(source: string, role: 'source' | 'destination', tuple: FlowTuple, peer?: string): boolean {
    if (this.#closing) {
      this.counters.refusedLimit++;
      this.emit('flow-fail', 'limit', role, tuple, peer);
      return false;
    }
    const a = this.#admission.admit(source, (victim) => {
      this.counters.evictedUdp++;
      (victim as UdpEdge).close('evicted');
    });
    if (a.ok) return true;
    if (a.reason === 'source') this.counters.refusedSourceQuota++;
    else this.counters.refusedLimit++;
    this.emit('flow-fail', a.reason === 'source' ? 'sourceQuota' : 'limit', role, tuple, peer);
    return false;
  }

  /** FlowHost: an edge ended a branch of `flow` for `reason` (counted by the edge). */
  flowFailed(flow: CarriedFlow, reason: EdgeFailReason, peer: string, detail?: FlowFailDetail): void {
    this.emit('flow-fail', reason, flow.role, flow.tuple, peer, detail);
  }

  #handshakeFailure(peer: string | undefined, reason: HandshakeFailureReason, from: DatagramSource): void {
    if (this.listenerCount('handshake-failure') > 0) this.emit('handshake-failure', peer, reason, from);
  }

  /** TCP flows that carried nothing for limits.tcpIdleMs are reset at both ends (UDP edges time out themselves). */
  #closeIdleTcp(): void {
    const now = performance.now();
    const limit = this.config.limits.tcpIdleMs;
    for (const f of this.#all) {
      if (f instanceof TcpEdge && now - f.lastActive >= limit) {
        this.counters.idleTcpClosed++;
        this.emit('flow-fail', 'idle', f.role, f.tuple, undefined);
        f.reset(STATUS.timedOut);
      }
    }
  }

  #register(flow: CarriedFlow, source: string): void {
    this.#all.add(flow);
    this.#admission.add(flow, source, flow.tuple.protocol === 'udp');
    for (const b of flow.branches) {
      this.#flows.set(`${b.peer}|${tupleKey(flow.tuple)}`, flow);
      this.#peers.get(b.peer)?.flows.add(flow);
    }
  }

  // ---- source side ----

  #interceptTcp(c: TcpIntercepted): void {
    try {
      this.#carryTcp(c);
    } catch (err) {
      // A socket call refused (or a bug) costs this connection, never the gateway: the client sees a reset.
      this.counters.flowErrors++;
      this.emit('flow-error', err);
      resetSocket(c.socket);
    }
  }

  #carryTcp(c: TcpIntercepted): void {
    const tuple = oneFamily({ protocol: 'tcp', src: c.src, dst: c.dst });
    if (undeliverable(c.dst.address, c.dst.port) || undeliverable(c.src.address, c.src.port)) {
      this.counters.refusedUndeliverable++;
      this.emit('flow-fail', 'undeliverable', 'source', tuple, undefined);
      resetSocket(c.socket);
      return;
    }
    const route = this.#choose(c.entry, c.dst.address);
    if (!route) {
      this.counters.refusedNoRoute++;
      this.emit('flow-fail', 'noRoute', 'source', tuple, undefined);
      resetSocket(c.socket);
      return;
    }
    // The same tuple still carried (a client reusing its port at once): the old flow is gone.
    for (const peer of route.peers) this.#flows.get(`${peer}|${tupleKey(tuple)}`)?.abort(peer, STATUS.resetByPeer);
    const source = Gateway.#source('source', tuple);
    if (!this.#admit(source, 'source', tuple)) {
      resetSocket(c.socket);
      return;
    }
    const edge = new TcpEdge({
      tuple,
      role: 'source',
      peers: route.peers,
      domain: c.entry.domain,
      host: this,
      entry: c.entry.name,
      ...(c.entry.latencySensitive ? { latencySensitive: true } : {}),
      openTimeoutMs: this.config.limits.openTimeoutMs,
      counters: this.counters,
    });
    this.#register(edge, source);
    this.counters.flowsOpened++;
    try {
      c.socket.setNoDelay(true);
      edge.attachClient(c.socket);
    } catch (err) {
      for (const p of route.peers) edge.abort(p, STATUS.other);
      this.forget(edge);
      throw err;
    }
    // A peer with no session now: the client waits for one at most limits.sessionWaitMs.
    for (const p of route.peers) if (!this.#peers.get(p)?.link.up) this.#sessionWait.add(edge, p);
    this.emit('flow-open', edge);
  }

  /** The peers a flow to `dst` matching `entry` goes to; undefined when none (or one the entry names is not a peer now). */
  #choose(entry: TcpIntercepted['entry'], dst: string): { peers: readonly string[] } | undefined {
    const route = this.#routes.choose(entry, dst);
    if (!route.ok || !route.peers.every((p) => this.#peers.has(p))) return undefined;
    return route;
  }

  #interceptUdp(d: UdpIntercepted): void {
    try {
      this.#carryUdp(d);
    } catch (err) {
      this.counters.flowErrors++;
      this.emit('flow-error', err);
    }
  }

  #carryUdp(d: UdpIntercepted): void {
    const tuple = oneFamily({ protocol: 'udp', src: d.src, dst: d.dst });
    // A reply could not go back to a source port 0, nor anything to a broadcast or multicast destination.
    if (undeliverable(d.dst.address, d.dst.port) || undeliverable(d.src.address, d.src.port)) {
      this.counters.refusedUndeliverable++;
      this.emit('flow-fail', 'undeliverable', 'source', tuple, undefined);
      return;
    }
    const route = this.#choose(d.entry, d.dst.address);
    if (!route) {
      this.counters.refusedNoRoute++;
      this.emit('flow-fail', 'noRoute', 'source', tuple, undefined);
      return;
    }
    let flow = this.#flows.get(`${route.peers[0]}|${tupleKey(tuple)}`);
    if (!flow) {
      const source = Gateway.#source('source', tuple);
      if (!this.#admit(source, 'source', tuple)) return;
      flow = new UdpEdge({
        tuple,
        role: 'source',
        peers: route.peers,
        domain: d.entry.domain,
        host: this,
        idleMs: this.config.limits.udpIdleMs,
        entry: d.entry.name,
        ...(d.entry.latencySensitive ? { latencySensitive: true } : {}),
        counters: this.counters,
        reply: d.reply,
      });
      this.#register(flow, source);
      this.counters.flowsOpened++;
      this.emit('flow-open', flow);
    }
    (flow as UdpEdge).fromClient(d.data);
  }

  // ---- messages from peers ----

  /** A message in its flow's order; `key` is `${peer}|${tuple}` (the sequencer's key, the flow map's too). */
  #onMessage(peer: Peer, domain: number, m: CarriedMessage, key: string): void {
    try {
      this.#route(peer, domain, m, key);
    } catch (err) {
      // One flow's failure (a socket call refused, say) must not take the gateway and every other flow down.
      this.counters.flowErrors++;
      this.emit('flow-error', err);
      const flow = this.#flows.get(key);
      if (flow) flow.abort(peer.config.name, STATUS.other);
      else if (m.header.function !== 'reset')
        this.#refuse(
          peer,
          domain,
          { protocol: m.header.protocol, src: m.header.src, dst: m.header.dst },
          m.header.function === 'open' ? 'open-ok' : 'reset',
          STATUS.other,
        );
    }
  }

  #route(peer: Peer, domain: number, m: CarriedMessage, key: string): void {
    const name = peer.config.name;
    const h = m.header;
    const flow = this.#flows.get(key);
    if (flow) {
      flow.onMessage(name, m);
      return;
    }
    // The header names the flow as the source gateway intercepted it.
    const tuple: FlowTuple = { protocol: h.protocol, src: h.src, dst: h.dst };
    if (h.protocol === 'tcp' && h.function === 'open') {
      this.#deliverTcp(peer, domain, tuple, m);
      return;
    }
    if (h.protocol === 'udp' && h.function === 'data') {
      const edge = this.#newDestinationUdp(peer, domain, tuple, m.header.latencySensitive === true);
      edge?.onMessage(name, m);
      return;
    }
    // Only a flow's start may make one; anything else waits in the sequencer for it, so here the start is a 0 that is not one.
    this.#unknownFlow(peer, domain, m);
  }

  /** A message for a flow this side does not have: say it is gone (unless it says so itself). */
  #unknownFlow(peer: Peer, domain: number, m: CarriedMessage): void {
    const h = m.header;
    const tuple: FlowTuple = { protocol: h.protocol, src: h.src, dst: h.dst };
    this.counters.unknownFlow++;
    this.#sequencer.forget(`${peer.config.name}|${tupleKey(tuple)}`);
    if (h.function !== 'reset' && h.function !== 'close' && h.function !== 'open-ok' && h.function !== 'window')
      this.send(peer.config.name, domain, message(tuple, 'reset', 0, undefined, STATUS.resetByPeer));
  }

  #refuse(peer: Peer, domain: number, tuple: FlowTuple, fn: 'open-ok' | 'reset', status: number): void {
    this.#sequencer.forget(`${peer.config.name}|${tupleKey(tuple)}`);
    this.send(peer.config.name, domain, message(tuple, fn, 0, undefined, status));
  }

  /** A peer's new flow to a destination that is no endpoint (port 0, broadcast, ...): refused, whatever deliver.allow says. */
  #undeliverable(peer: Peer, domain: number, tuple: FlowTuple, fn: 'open-ok' | 'reset'): boolean {
    if (!undeliverable(tuple.dst.address, tuple.dst.port)) return false;
    this.counters.refusedUndeliverable++;
    this.emit('flow-fail', 'undeliverable', 'destination', tuple, peer.config.name);
    this.#refuse(peer, domain, tuple, fn, STATUS.unreachable);
    return true;
  }

  #deliverTcp(peer: Peer, domain: number, tuple: FlowTuple, open: CarriedMessage): void {
    if (this.#undeliverable(peer, domain, tuple, 'open-ok')) return;
    if (!this.#allowed(tuple.dst.address)) {
      this.counters.refusedNotAllowed++;
      this.emit('flow-fail', 'notAllowed', 'destination', tuple, peer.config.name);
      this.#refuse(peer, domain, tuple, 'open-ok', STATUS.noRoute);
      return;
    }
    const source = Gateway.#source('destination', tuple, peer.config.name);
    if (!this.#admit(source, 'destination', tuple, peer.config.name)) {
      this.#refuse(peer, domain, tuple, 'open-ok', STATUS.limit);
      return;
    }
    const edge = new TcpEdge({
      tuple,
      role: 'destination',
      peers: [peer.config.name],
      domain,
      host: this,
      counters: this.counters,
      // The source's table marked it: the replies go the same way.
      ...(open.header.latencySensitive ? { latencySensitive: true } : {}),
    });
    this.#register(edge, source);
    this.counters.flowsDelivered++;
    // The open itself is message 0 of the peer's sequence.
    edge.branches[0]!.seqIn = open.header.sequence + 1;
    let socket: net.Socket;
    try {
      if (this.#mark) {
        // Marked before its SYN, so a transparent rule on this host never takes it back in.
        socket = markedTcpSocket(net.isIPv6(tuple.dst.address) ? 6 : 4, this.#mark);
        (socket as net.Socket & { allowHalfOpen: boolean }).allowHalfOpen = true;
        socket.connect(tuple.dst.port, tuple.dst.address);
      } else {
        socket = net.connect({ host: tuple.dst.address, port: tuple.dst.port, allowHalfOpen: true });
      }
    } catch (err) {
      // socket() refused (descriptors exhausted, say): the peer hears open-ok with why, as for a failed connect.
      this.forget(edge);
      this.#refuse(peer, domain, tuple, 'open-ok', statusOfError(err as NodeJS.ErrnoException));
      this.emit('flow-error', err);
      return;
    }
    edge.attachServer(socket, this.config.deliver.connectTimeoutMs);
    this.emit('flow-open', edge);
  }

  #newDestinationUdp(peer: Peer, domain: number, tuple: FlowTuple, latencySensitive: boolean): UdpEdge | undefined {
    if (this.#undeliverable(peer, domain, tuple, 'reset')) return undefined;
    if (!this.#allowed(tuple.dst.address)) {
      this.counters.refusedNotAllowed++;
      this.emit('flow-fail', 'notAllowed', 'destination', tuple, peer.config.name);
      this.#refuse(peer, domain, tuple, 'reset', STATUS.noRoute);
      return undefined;
    }
    const source = Gateway.#source('destination', tuple, peer.config.name);
    if (!this.#admit(source, 'destination', tuple, peer.config.name)) {
      // Said at once, so the source side ends its flow instead of sending into nothing.
      this.#refuse(peer, domain, tuple, 'reset', STATUS.limit);
      return undefined;
    }
    const edge = new UdpEdge({
      tuple,
      role: 'destination',
      peers: [peer.config.name],
      domain,
      host: this,
      idleMs: this.config.limits.udpIdleMs,
      counters: this.counters,
      ...(this.#mark ? { mark: this.#mark } : {}),
      ...(latencySensitive ? { latencySensitive } : {}),
    });
    this.#register(edge, source);
    this.counters.flowsDelivered++;
    edge.connect();
    this.emit('flow-open', edge);
    return edge;
  }

  /**
   * Ends the source-side flows table entry `entry` handed over (it was
   * removed): its UDP flows always (their replies left from its socket,
   * now closed), with `close`; its TCP flows only when `tcp`, with resets.
   * Returns how many ended.
   */
  endEntryFlows(entry: string, tcp: boolean): number {
    let n = 0;
    for (const f of [...this.#all]) {
      if (f.role !== 'source' || f.entry !== entry) continue;
      if (f instanceof UdpEdge) f.close('entry removed');
      else if (tcp && f instanceof TcpEdge) f.reset(STATUS.other);
      else continue;
      n++;
    }
    return n;
  }

  // ---- status and shutdown ----

  status(): GatewayStatus {
    this.counters.heldDropped = this.#sequencer.stats.overflowDropped;
    return buildStatus({
      name: this.config.name,
      port: this.#port,
      interceptionName: this.#interceptionName,
      interception: this.#interception,
      peers: this.#peers.values(),
      flows: this.#all,
      table: this.#admission,
      limits: this.config.limits,
      demuxDropped: this.#demux.dropped,
      sequencer: this.#sequencer.stats,
      counters: this.counters,
    });
  }

  /**
   * Ends every flow (as resets: the applications must not think the data
   * arrived), the links and the socket. `abrupt` skips telling the peers
   * (as a crash would): they find out when their links time out.
   */
  async close(options: { abrupt?: boolean } = {}): Promise<void> {
    if (this.#closing) return;
    // New flows are refused from now on; the resets below still go out.
    this.#closing = true;
    if (options.abrupt) this.#closed = true;
    for (const f of [...this.#all]) for (const b of f.branches) f.abort(b.peer, STATUS.other);
    for (const p of this.#peers.values()) {
      p.link.flush();
      if (p.deadTimer) clearTimeout(p.deadTimer);
    }
    // A moment for the resets to leave before the links go.
    if (!options.abrupt) await new Promise((r) => setTimeout(r, 50));
    this.#closed = true;
    clearInterval(this.#sweep);
    this.#sessionWait.close();
    for (const p of this.#peers.values()) p.link.close(!options.abrupt);
    this.#demux.close();
    await this.#port.close();
  }
}
