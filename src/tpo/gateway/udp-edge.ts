/**
 * The UDP edge handler (issue #7): one per carried UDP flow (5-tuple), at
 * either gateway. Each datagram is one `data` message; there is no open
 * handshake (the far side makes the flow on its first datagram) and no
 * window: a datagram that finds the peer link full is dropped and
 * counted, as a router would. A flow idle for `idleMs` ends, and says so
 * with `close` so the far side lets go too.
 *
 * Source side: datagrams from the client go to every branch (fan-out to
 * several gateways); replies from any branch go back to the client through
 * `reply` (explicit mode: from the listener's socket; transparent mode:
 * from the original destination's address).
 * Destination side: a connected socket to the destination, whose replies
 * go back as `data`.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { markDgramSocket } from '../../sys/socket-options.js';
import { EMPTY, message, newBranch, STATUS, type Branch, type CarriedFlow, type FlowHost, type FlowStatus, type FlowTuple, tupleKey } from './flow.js';
import { ROUTING_HEADER_LENGTH, type CarriedMessage } from '../../wire/tpo/driver-buffer.js';
import { MESSAGE_HEADER_V6 } from '../../wire/tpo/message.js';

/**
 * The largest datagram one message carries: a message must fit a driver
 * buffer (packet-driver.ts: 32 KiB by default, minus its routing header
 * and an IPv6 message header). Larger datagrams are dropped and counted
 * (`udpTooLarge`) before they take a sequence number, so the flow goes on.
 */
export const MAX_CARRIED_DATAGRAM = 32 * 1024 - ROUTING_HEADER_LENGTH - MESSAGE_HEADER_V6;

/**
 * Datagrams held while the destination socket binds (one event-loop turn
 * or so). The flow sequencer can release a whole burst at once — a flow's
 * first datagram lost on the WAN holds the rest until it is repaired — so
 * this holds what the sequencer may release in one go (it holds up to
 * 8192 per flow), bounded in bytes too.
 */
const PENDING_DATAGRAMS = 1024;
const PENDING_BYTES = 1 << 20;

/** Receive buffer of a destination-side UDP socket (one per flow). */
const UDP_EDGE_BUFFER = 1 << 20;

export interface UdpEdgeOptions {
  readonly tuple: FlowTuple;
  readonly role: 'source' | 'destination';
  readonly peers: readonly string[];
  readonly domain: number;
  readonly host: FlowHost;
  readonly idleMs: number;
  readonly entry?: string;
  /** Latency-sensitive (the table entry, or the flag on the flow's first message): its thin messages go redundantly. */
  readonly latencySensitive?: boolean;
  readonly counters: { udpDropped: number; udpTooLarge: number; sequenceErrors: number };
  /** Source side: sends a reply datagram to the client. */
  readonly reply?: (data: Uint8Array) => void;
  /** Destination side: SO_MARK for the socket towards the destination (transparent interception skips it). */
  readonly mark?: number;
}

export class UdpEdge implements CarriedFlow {
  readonly tuple: FlowTuple;
  readonly role: 'source' | 'destination';
  readonly branches: Branch[];
  readonly #o: UdpEdgeOptions;
  #socket: dgram.Socket | undefined;
  #lastActive = performance.now();
  #timer: NodeJS.Timeout;
  #ended = false;
  #state = 'open';
  #bound = false;
  /** Datagrams that arrived before the socket was bound (and marked). */
  readonly #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  constructor(options: UdpEdgeOptions) {
    this.#o = options;
    this.tuple = options.tuple;
    this.role = options.role;
    this.branches = options.peers.map(newBranch);
    // Checked a few times per idle period: an idle flow lingers at most a quarter longer.
    this.#timer = setInterval(
      () => {
        if (performance.now() - this.#lastActive >= this.#o.idleMs) this.close('idle');
      },
      Math.max(250, options.idleMs / 4),
    );
    this.#timer.unref();
  }

  /** Destination side: opens the socket towards the destination. */
  connect(): void {
    const t = this.tuple;
    const s = dgram.createSocket(isIPv6(t.dst.address) ? 'udp6' : 'udp4');
    this.#socket = s;
    // Only the destination's answers go back (the socket is not connected, so
    // sends need not wait for connect; anyone else's datagrams are dropped).
    s.on('message', (msg, r) => {
      if (r.port === t.dst.port && r.address === t.dst.address) this.#fromLocal(msg);
      else this.#o.counters.udpDropped++;
    });
    s.on('error', () => {
      // Before the bind completed: the socket never came up, the flow cannot be delivered (its peer hears a reset).
      if (!this.#bound) this.#fail();
      else this.#o.counters.udpDropped++;
    });
    // Bound now (not at the first send) so the mark is on before any packet leaves.
    s.bind(0, () => {
      if (this.#ended) return;
      // The destination's answers can come in bursts while this thread is busy
      // with the link (a loaded host): the default buffer (about 200 small
      // datagrams on loopback) lost a few of 200 answers in a full test run.
      try {
        s.setRecvBufferSize(UDP_EDGE_BUFFER);
      } catch {
        /* capped by the host (net.core.rmem_max): the default stays */
      }
      if (this.#o.mark) {
        try {
          markDgramSocket(s, this.#o.mark);
        } catch {
          this.#o.counters.udpDropped++;
        }
      }
      this.#bound = true;
      this.#pendingBytes = 0;
      for (const d of this.#pending.splice(0)) this.#toDestination(d);
    });
  }

  /** Source side: a datagram from the client. */
  fromClient(data: Uint8Array): void {
    this.#fromLocal(data);
  }

  get entry(): string | undefined {
    return this.#o.entry;
  }

  get lastActive(): number {
    return this.#lastActive;
  }

  #fromLocal(data: Uint8Array): void {
    if (this.#ended) {
      // A datagram that raced the flow's end (its socket's last callbacks): lost, so counted.
      this.#o.counters.udpDropped++;
      return;
    }
    if (data.length > MAX_CARRIED_DATAGRAM) {
      this.#o.counters.udpTooLarge++;
      return;
    }
    this.#lastActive = performance.now();
    this.#o.host.active(this);
    for (const b of this.branches) {
      if (b.done) {
        // That peer reset this flow (the others, if any, still carry it): the copy for it is lost.
        this.#o.counters.udpDropped++;
        continue;
      }
      // A thin flow's datagram (DNS, voice, a game's state) is not dropped
      // because bulk transfers filled the queue: it goes ahead of them, and
      // the meter bounds how much a thin flow can add.
      const urgent = b.meter.urgent(data.length);
      if (!this.#o.host.hasRoom(b.peer, urgent ? 'urgent' : 'datagram')) {
        this.#o.counters.udpDropped++;
        continue;
      }
      b.bytesOut += data.length;
      this.#send(b, 'data', data, STATUS.ok, urgent);
    }
  }

  onMessage(peer: string, m: CarriedMessage): void {
    const b = this.branches.find((x) => x.peer === peer);
    if (!b || b.done || this.#ended) {
      if (m.header.function === 'data') this.#o.counters.udpDropped++;
      return;
    }
    if (m.header.sequence !== b.seqIn >>> 0) this.#o.counters.sequenceErrors++;
    b.seqIn = m.header.sequence + 1;
    this.#lastActive = performance.now();
    this.#o.host.active(this);
    switch (m.header.function) {
      case 'data':
        b.bytesIn += m.data.length;
        if (this.role === 'destination') {
          if (this.#bound) this.#toDestination(m.data);
          else if (this.#pending.length < PENDING_DATAGRAMS && this.#pendingBytes + m.data.length <= PENDING_BYTES) {
            // A copy: the message may be a view into a whole driver buffer, which it would keep alive.
            this.#pending.push(Uint8Array.from(m.data));
            this.#pendingBytes += m.data.length;
          } else this.#o.counters.udpDropped++;
        } else {
          try {
            this.#o.reply?.(m.data);
          } catch {
            // The client's reply path refused it (a closing interception, a socket the kernel refused): a drop, like any UDP loss.
            this.#o.counters.udpDropped++;
          }
        }
        break;
      case 'close':
      case 'reset':
        b.done = true;
        if (this.branches.every((x) => x.done)) this.#end('closed by peer');
        break;
      default:
        break;
    }
  }

  #toDestination(data: Uint8Array): void {
    const s = this.#socket;
    if (!s || this.#ended) return;
    try {
      s.send(data, this.tuple.dst.port, this.tuple.dst.address, (err) => {
        if (err) this.#o.counters.udpDropped++;
      });
    } catch {
      // node:dgram throws for what it will not send at all (a bad port, a closed socket): the gateway refuses
      // such destinations before a flow exists (destination.ts); this is the last guard, never an escape.
      this.#o.counters.udpDropped++;
    }
  }

  /** One message of this flow to a branch's peer; a control message (no data) is urgent when the flow is thin. */
  #send(b: Branch, fn: 'data' | 'reset' | 'close', data: Uint8Array, status: number, urgent = b.meter.urgent(0)): void {
    this.#o.host.send(b.peer, this.#o.domain, message(this.tuple, fn, b.seqOut++, data, status, this.#o.latencySensitive), urgent);
  }

  /** The destination side could not open its socket: the flow ends as a reset. */
  #fail(): void {
    if (this.#ended) return;
    for (const b of this.branches) if (!b.done) this.#send(b, 'reset', EMPTY, STATUS.other);
    this.#end('failed');
  }

  onPeerDrain(): boolean {
    return false;
  }

  resetBranch(peer: string, status: number): void {
    const b = this.branches.find((x) => x.peer === peer);
    if (!b || b.done || this.#ended) return;
    this.#send(b, 'reset', EMPTY, status);
    b.done = true;
    if (this.branches.every((x) => x.done)) this.#end(`reset (${status})`);
  }

  abort(peer: string): void {
    const b = this.branches.find((x) => x.peer === peer);
    if (!b) return;
    b.done = true;
    if (this.branches.every((x) => x.done)) this.#end('peer gone');
  }

  /** Ends the flow here and tells the branches. */
  close(reason = 'closed'): void {
    if (this.#ended) return;
    for (const b of this.branches) if (!b.done) this.#send(b, 'close', EMPTY, STATUS.ok);
    this.#end(reason);
  }

  #end(state: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#state = state;
    clearInterval(this.#timer);
    try {
      this.#socket?.close();
    } catch {
      /* already closed */
    }
    this.#o.host.forget(this);
  }

  status(): FlowStatus {
    const p = this.branches[0]!;
    return {
      tuple: tupleKey(this.tuple),
      role: this.role,
      peers: this.branches.map((b) => b.peer),
      state: this.#state,
      bytesOut: p.bytesOut,
      bytesIn: p.bytesIn,
      ...(this.#o.entry ? { entry: this.#o.entry } : {}),
    };
  }
}
