/* eslint-disable max-lines -- send queue, pacer, flow control and receive path share one session's per-datagram state (acks, loss: own files) */
/**
 * The TPO data mover (issue #6): carries driver buffers between two
 * gateways over UDP datagrams, reliably and at a rate the path model
 * chooses, for one session whose keys are already agreed.
 *
 * Sending: each driver buffer is cut into segments (segments.ts) with
 * consecutive logical numbers; every datagram gets the next physical
 * number (never reused; a retransmission gets a new one) and is sealed
 * (datagram-crypto.ts). A pacer releases datagrams at the rate control's
 * pacing rate while the bytes in flight stay under its window; lost
 * segments go before new ones.
 *
 * Acknowledging: the receiver answers data within `ackDelayMs` (sooner
 * after every eighth data datagram) and piggybacks acks on its own data:
 * highest physical numbers sent and received, the ack delay, the delivery
 * rate, the cumulative logical point and a bitmap beyond it, and the
 * ranges of physical numbers received (ack-builder.ts).
 *
 * Loss: a datagram counts as lost when three later ones were acknowledged,
 * or one was acknowledged 9/8 RTT after it was sent (RFC 9002; checked on
 * every pacer tick too, not only when an ack comes); its segment, if still
 * unacknowledged, is sent again. The last segment sent, unacknowledged a
 * probe timeout after it left, is sent again once (a tail loss probe). With nothing
 * acknowledged for an RTO, everything in flight counts as lost and the RTO
 * backs off 1.5x. Every acknowledged datagram gives a delivery rate sample
 * to the rate control; the minimum RTT and the rounds feed it too
 * (loss-detector.ts).
 *
 * Flow control: `send()` returns false once more than QUEUE_MS of the
 * pacing rate waits unsent (at least 64 KiB), or more than
 * `sendBufferBytes` are queued or in flight; 'drain' says when there is
 * room again, so the sending edge is held back instead of buffered without
 * limit. The short queue matters as much as the bound: everything the
 * gateway's flows send shares it in order, so a request of an interactive
 * flow waits behind at most QUEUE_MS of a bulk flow's data, not seconds of
 * it; the rest waits in the bulk application's own socket. The
 * receiver holds at most a window of out-of-order segments.
 *
 * Redundancy: the urgent segments of latency-sensitive flows are followed
 * one pacer tick later by a parity datagram over those sent in that tick
 * (or a second copy of a lone one), from which the receiver rebuilds a
 * single lost one without a retransmission (parity.ts).
 *
 * Liveness: an idle side sends a keepalive (an acknowledgement) every
 * `keepaliveMs`; with nothing received for `deadAfterMs` the peer counts
 * as down ('down'), the sender keeps probing at its backed-off RTO, and the
 * first authentic datagram brings it back ('up').
 *
 * Inbound datagrams that do not decode, carry another connection id, fail
 * authentication or repeat a physical number are dropped and counted,
 * never answered.
 */
import { EventEmitter } from 'node:events';
import {
  dataMoverFieldLength,
  decodeDataMoverField,
  writeDataMoverField,
  MAX_ACK_BITMAP_BYTES,
  MAX_ACK_RANGES,
  TD_BUFFER_END,
  TD_BUFFER_START,
  TD_DATA,
  TD_GOODBYE,
  TD_PARITY,
  TD_PROTECTED,
  TD_RETRANSMISSION,
  type Ack,
  type DataMoverField,
} from '../../wire/tpo/data-mover.js';
import { WireError } from '../../wire/tpo/errors.js';
import { openDatagram, sealDatagram, TAG_LENGTH, type SessionKeys } from './datagram-crypto.js';
import { ReplayWindow } from './replay-window.js';
import { DEFAULT_MAX_BUFFER_BYTES, Reassembler, segmentBuffer, type Segment } from './segments.js';
import { RttEstimator } from './rtt.js';
import { RateControl } from './rate-control.js';
import { AckBuilder, type AckSize } from './ack-builder.js';
import { LossDetector } from './loss-detector.js';
import { decodeParity, encodeParity, type Parity } from '../../wire/tpo/parity.js';
import { ParityCache, ParityGroup } from './parity.js';

export interface DataMoverOptions {
  /** This side's connection id (the peer puts it in every datagram it sends here). */
  readonly localId: number;
  /** The peer's connection id. */
  readonly peerId: number;
  readonly keys: SessionKeys;
  /** Hands a sealed datagram to the network. */
  readonly transmit: (datagram: Uint8Array) => void;
  /**
   * `transmit` copies the datagram before it returns (a batched port's
   * stage): the datagram is then a view of the AEAD's scratch region, valid
   * only during the call, rather than a new buffer per datagram. Default false.
   */
  readonly transmitCopies?: boolean;
  /**
   * Segment payload bytes per datagram (each side picks its own; the
   * receiver takes any size down to the default); default 1350: with the field (28 B), the tag (16 B) and IPv4+UDP (28 B) a datagram stays at 1422 B, inside a 1500-byte MTU and PPPoE's 1492 (kcptun's default; QUIC's 1200 floor also fits).
   */
  readonly segmentSize?: number;
  /** Operator cap on the sending rate, bytes/s. */
  readonly maxRateBps?: number;
  /** Pacing rate before the first measurement, bytes/s (default 1 Mbit/s; the session keeps its estimate afterwards, so this matters once per session). */
  readonly initialRateBps?: number;
  /**
   * A round-trip time measured before the session (the handshake's): the
   * first RTT sample, so the first flight is paced over one measured round
   * trip instead of an assumed one (RFC 9002 §5.2 lets the handshake seed it).
   */
  readonly initialRttMs?: number;
  /** Queued plus in-flight bytes beyond which send() asks the caller to wait; default 8 MiB. */
  readonly sendBufferBytes?: number;
  /** An acknowledgement leaves at most this long after data arrived (or after every 8 data datagrams); default 10 ms. */
  readonly ackDelayMs?: number;
  readonly keepaliveMs?: number;
  readonly deadAfterMs?: number;
  /** Out-of-order segments the receiver holds at most; default 16,384. */
  readonly receiveWindowSegments?: number;
  /**
   * Hand buffers to 'buffer' in the order they were sent (default), or each
   * as soon as it is complete (false): a buffer then waits only for its own
   * lost segments; the receiver restores whatever order it needs (the
   * gateway: per flow, from message sequence numbers).
   */
  readonly orderedDelivery?: boolean;
  /** A clock in ms (tests may drive one); default performance.now. */
  readonly now?: () => number;
}

export interface DataMoverStats {
  buffersSent: number;
  buffersDelivered: number;
  datagramsSent: number;
  datagramsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Segment bytes delivered to the receiving driver, once each. */
  payloadDelivered: number;
  retransmissions: number;
  /** Parity datagrams and second copies for redundant (latency-sensitive) segments (parity.ts), and their bytes: the cost of that redundancy. */
  redundantDatagrams: number;
  redundantBytes: number;
  /** Segments this side rebuilt from a parity datagram instead of waiting for a retransmission. */
  parityRecovered: number;
  timeouts: number;
  /** Tail loss probes: the last segment sent again when nothing acknowledged it within a probe timeout (also counted in retransmissions). */
  probes: number;
  lost: number;
  duplicates: number;
  /** Segments the receiver refused: beyond its window or its held-bytes limit (the sender sends them again). */
  segmentsRefused: number;
  /** Buffers the receiver dropped while rebuilding them: segments that fit no buffer, or a buffer larger than any driver buffer. */
  buffersDropped: number;
  /** Segment bytes held for rebuilding now (bounded: segments.ts). */
  reassemblyBytes: number;
  /** Inbound datagrams dropped: undecodable, another connection, unauthenticated, replayed. */
  dropped: { malformed: number; otherConnection: number; unauthenticated: number; replayed: number };
}

/** The default segment (see DataMoverOptions.segmentSize). */
const DEFAULT_SEGMENT_SIZE = 1350;
/** IP and UDP headers, the field with a piggybacked ack, and the tag, with room to spare: 1500 - 150 = 1350 over IPv4. */
const MTU_OVERHEAD = { 4: 150, 6: 170 } as const;
/** The most a datagram may carry: the largest UDP payload over IPv4, less the same overhead. */
const MAX_SEGMENT_SIZE = 65_507 - 150;

/**
 * The segment size for a path of IP MTU `mtu` (bytes), the default's rule
 * applied to other MTUs: 1350 for 1500 over IPv4, 8850 for a 9000-byte
 * jumbo path, about 65 KB for loopback's 65536.
 */
export function segmentSizeForMtu(mtu: number, family: 4 | 6): number {
  return Math.max(512, Math.min(MAX_SEGMENT_SIZE, Math.floor(mtu) - MTU_OVERHEAD[family]));
}

const PACER_TICK_MS = 1;
/**
 * A quiet session (nothing queued, in flight or waiting for an ack) ticks
 * only when its keepalive or its dead-peer check is due, and at least this
 * often: at the pacer's 1 ms an idle pair of gateways spent 3 % of a CPU
 * each per peer, all of it timer callbacks (a mesh of N peers, N times that).
 */
const IDLE_TICK_MAX_MS = 250;
/** The logical number a parity datagram is tracked under: no segment has it, so its loss resends nothing. */
const PARITY_LOGICAL = -1;
/** The first flight: 10 datagrams (RFC 6928's and RFC 9002's initial window). */
const INITIAL_WINDOW_DATAGRAMS = 10;
/** A data datagram's bytes beyond its segment: the field without an ack, and the tag. */
const DATAGRAM_OVERHEAD = dataMoverFieldLength({ connectionId: 0, transport: { flags: TD_DATA, logical: 0, physical: 0 } }) + TAG_LENGTH;
/** Unsent bytes send() accepts before it asks the caller to wait: this long at the pacing rate, at least MIN_QUEUE_BYTES. */
const QUEUE_MS = 20;
const MIN_QUEUE_BYTES = 64 * 1024;
const DATAGRAM_QUEUE_BYTES = 1024 * 1024;
/** The pacer may send this many ms of rate at once after an idle moment (timers are 1 ms coarse). */
const BURST_MS = 2;
const CATCH_UP_MS = 10;
/**
 * Thin flows' segments (the urgent lane) may exceed the window and the
 * pacer's credit by this much. Over direct TCP an interactive connection has
 * a congestion window of its own and never waits for a bulk one's acks;
 * through the pair every flow shares the session's window, and at 200
 * Mbit/s, 10 ms a request found it full 40 % of the time. Bounded in bytes
 * whatever the number of thin flows, and the pacer's debt is paid back by
 * the bulk, so the average rate and the queue it builds stay the same.
 */
export const URGENT_ALLOWANCE_BYTES = 16 * 1024;
/** Data datagrams between acknowledgements (sooner after ackDelayMs): acks cost reverse bandwidth. */
const ACK_EVERY = 8;
/** Goodbye datagrams sent on close: at 2 % random loss all three are lost once in 125,000 closes. */
const GOODBYE_COPIES = 3;
/** An ack-only datagram's ranges and bitmap stay within one MTU-sized datagram. */
const FULL_ACK: AckSize = { ranges: 16, bitmapBytes: 512 };
/**
 * The ack piggybacked on a data datagram is small (60 B): with a full
 * 1350-byte segment the datagram stays at 1454 B, 1482 B with IPv4 and UDP.
 */
const PIGGYBACK_ACK: AckSize = { ranges: 1, bitmapBytes: 8 };
/** The largest field: the prefix, the transport-data subfield and an ack with the most ranges and bitmap the wire allows. */
const FIELD_SCRATCH_BYTES = 128 + MAX_ACK_BITMAP_BYTES + MAX_ACK_RANGES * 12;
const EMPTY_SEGMENT = new Uint8Array(0);
const NO_BUFFERS: readonly Uint8Array[] = [];

export class DataMover extends EventEmitter {
  readonly stats: DataMoverStats = {
    buffersSent: 0,
    buffersDelivered: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    payloadDelivered: 0,
    retransmissions: 0,
    redundantDatagrams: 0,
    redundantBytes: 0,
    parityRecovered: 0,
    timeouts: 0,
    probes: 0,
    lost: 0,
    duplicates: 0,
    segmentsRefused: 0,
    buffersDropped: 0,
    reassemblyBytes: 0,
    dropped: { malformed: 0, otherConnection: 0, unauthenticated: 0, replayed: 0 },
  };
  readonly rtt = new RttEstimator();
  readonly rate: RateControl;
  readonly #o: Required<Omit<DataMoverOptions, 'maxRateBps' | 'initialRateBps' | 'initialRttMs'>>;
  readonly #now: () => number;

  // Sending side.
  #nextLogical = 0;
  #nextPhysical = 0;
  /** Redundant segments sent in the present pacer tick: their parity (or, alone, a second copy) follows one tick after the first (a short burst of loss should not take both). */
  readonly #parity = new ParityGroup();
  readonly #queue: Segment[] = [];
  /**
   * Segments of urgent buffers: sent before the queue (after repairs). Their
   * logical numbers are higher than those of segments still queued, which
   * the receiver takes like any reordering; with `orderedDelivery` they
   * still wait for those, so urgency pays only with unordered delivery
   * (the gateways').
   */
  readonly #urgent: Segment[] = [];
  #queueHead = 0;
  readonly #retransmit: number[] = [];
  /** Unacknowledged segments by logical number (what a retransmission resends). */
  readonly #unacked = new Map<number, Segment>();
  /** Data datagrams in flight, acks and loss (loss-detector.ts). */
  readonly #loss: LossDetector;
  #queuedBytes = 0;
  #roundEndPhysical = 0;
  /** The lowest RTT sample of the current round. */
  #roundRtt = Infinity;
  #roundMaxRtt = 0;
  #tokens = 0;
  #lastTick = 0;
  #lastSendAt = 0;
  /** The last segment sent and when (the tail a probe resends), and whether that tail was probed already. */
  #lastSentLogical = -1;
  #lastDataSendAt = 0;
  #probed = false;
  #wantDrain = false;

  // Receiving side.
  readonly #reassembler: Reassembler;
  readonly #replay = new ReplayWindow();
  /** Copies of the peer's protected segments, for its parity datagrams (parity.ts). */
  readonly #kept = new ParityCache();
  /** What arrived, for the acks this side sends (ack-builder.ts). */
  readonly #acks: AckBuilder;
  #ackDue = false;
  #ackDueAt = 0;
  #dataSinceAck = 0;
  #lastReceiveAt = 0;
  #peerDown = false;

  /** Where each datagram's field is written before it is sealed (the largest field fits). */
  readonly #field = new Uint8Array(FIELD_SCRATCH_BYTES);

  #timer: NodeJS.Timeout | undefined;
  /** The timer is the quiet session's one-shot (#sleep), not the pacer's interval. */
  #sleeping = false;
  #closed = false;
  #goodbye = false;

  constructor(options: DataMoverOptions) {
    super();
    this.#o = {
      segmentSize: DEFAULT_SEGMENT_SIZE,
      sendBufferBytes: 8 << 20,
      ackDelayMs: 10,
      keepaliveMs: 1000,
      deadAfterMs: 5000,
      receiveWindowSegments: 16_384,
      orderedDelivery: true,
      transmitCopies: false,
      now: () => performance.now(),
      ...options,
    } as Required<Omit<DataMoverOptions, 'maxRateBps' | 'initialRateBps' | 'initialRttMs'>>;
    this.#now = this.#o.now;
    this.rate = new RateControl({
      ...(options.maxRateBps ? { maxRateBps: options.maxRateBps } : {}),
      ...(options.initialRateBps ? { initialRateBps: options.initialRateBps } : {}),
      minWindowBytes: 4 * this.#o.segmentSize,
      initialWindowBytes: INITIAL_WINDOW_DATAGRAMS * (this.#o.segmentSize + DATAGRAM_OVERHEAD),
      // The peer acks every ACK_EVERY data datagrams (else after its ack delay): room for one such batch
      // held at the receiver and one whose ack is on its way, whatever the BDP, so no round waits for the
      // peer's ack timer (on loopback, with a BDP of a few datagrams, every round did: 4 Mbit/s).
      ackAllowanceBytes: 2 * ACK_EVERY * (this.#o.segmentSize + DATAGRAM_OVERHEAD),
    });
    // A buffer spans at most this many of the peer's segments (both ends use one segment size).
    this.#reassembler = new Reassembler(this.#o.receiveWindowSegments, this.#o.orderedDelivery, {
      // The peer may cut smaller segments than this side (its own MTU setting); the default size bounds it.
      maxSegmentsPerBuffer: Math.ceil(DEFAULT_MAX_BUFFER_BYTES / Math.min(this.#o.segmentSize, DEFAULT_SEGMENT_SIZE)),
    });
    const t = this.#now();
    if (options.initialRttMs !== undefined && options.initialRttMs > 0) {
      this.rtt.sample(options.initialRttMs, 0, t);
      this.rate.onMinRtt(this.rtt.minRttMs);
    }
    this.#lastTick = t;
    // Times count from the session's start: the first keepalive is due keepaliveMs from now.
    this.#lastSendAt = t;
    this.#lastReceiveAt = t;
    this.#loss = new LossDetector(this.rtt, this.rate, (logical) => this.#onLost(logical), t);
    this.#acks = new AckBuilder(t);
    this.#timer = setInterval(() => this.#tick(), PACER_TICK_MS);
  }

  /**
   * Nothing for the pacer to do: nothing queued or to retransmit, nothing in
   * flight (so no loss, probe or retransmission timer runs), no ack owed.
   */
  get #quiet(): boolean {
    return (
      !this.#ackDue &&
      this.#unacked.size === 0 &&
      this.#loss.bytesInFlight === 0 &&
      this.#urgent.length === 0 &&
      this.#retransmit.length === 0 &&
      this.#queueHead >= this.#queue.length
    );
  }

  /** A quiet session's timer: one tick when the keepalive or the dead-peer check is next due (at most IDLE_TICK_MAX_MS away). */
  #sleep(now: number): void {
    const due = Math.min(this.#lastSendAt + this.#o.keepaliveMs, this.#peerDown ? Infinity : this.#lastReceiveAt + this.#o.deadAfterMs);
    const wait = Math.min(IDLE_TICK_MAX_MS, Math.max(PACER_TICK_MS, Math.ceil(due - now) + 1));
    clearInterval(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), wait);
    this.#sleeping = true;
  }

  /**
   * Back to the pacer's interval before anything is queued or owed. The
   * credit is what ticks every millisecond would have left: at most
   * BURST_MS of rate, not the CATCH_UP_MS a late tick may claim.
   */
  #wake(): void {
    if (!this.#sleeping || this.#closed) return;
    this.#sleeping = false;
    clearTimeout(this.#timer);
    const now = this.#now();
    const rate = this.rate.pacingRateBps;
    this.#tokens = Math.min(this.#tokens + ((now - this.#lastTick) * rate) / 1000, (BURST_MS * rate) / 1000 + this.#o.segmentSize);
    this.#lastTick = now;
    this.#timer = setInterval(() => this.#tick(), PACER_TICK_MS);
  }

  /** Bytes waiting to be sent for the first time. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Bytes queued or in flight (what flow control counts). */
  get backlogBytes(): number {
    return this.#queuedBytes + this.#loss.bytesInFlight;
  }

  get peerDown(): boolean {
    return this.#peerDown;
  }

  /**
   * Queues a driver buffer; `urgent`: its segments leave before those
   * queued (a small flow's message need not wait behind a bulk transfer's
   * queue). False: over the send buffer; wait for 'drain' before sending more.
   */
  send(buffer: Uint8Array, urgent = false, redundant = false): boolean {
    if (this.#closed) throw new Error('data mover is closed');
    this.#wake();
    const segs = segmentBuffer(buffer, this.#o.segmentSize, this.#nextLogical);
    this.#nextLogical += segs.length;
    for (const cut of segs) {
      const s = urgent && redundant ? { ...cut, redundant } : cut;
      (urgent ? this.#urgent : this.#queue).push(s);
      this.#unacked.set(s.logical, s);
      this.#queuedBytes += s.bytes.length;
    }
    this.stats.buffersSent++;
    this.#pump();
    const ok = this.hasRoom;
    if (!ok) this.#wantDrain = true;
    return ok;
  }

  /** The queue of unsent bytes is short and queued plus in-flight bytes are under the send buffer: more may be sent now. */
  get hasRoom(): boolean {
    return this.#queuedBytes < this.#queueLimit() && this.backlogBytes < this.#o.sendBufferBytes;
  }

  /**
   * Room for a sender that cannot wait (a UDP flow's datagram: dropped when
   * refused). Flows that can wait are held near the queue limit by hasRoom
   * and fill it whenever it drains (new connections at once can overshoot
   * it by a socket read each), so datagrams get four times that, and at
   * least 1 MiB, before they are refused: they are neither starved by bulk
   * transfers nor able to queue without bound.
   */
  get hasRoomForDatagram(): boolean {
    return this.#queuedBytes < Math.max(DATAGRAM_QUEUE_BYTES, 4 * this.#queueLimit()) && this.backlogBytes < this.#o.sendBufferBytes;
  }

  /**
   * Room for an urgent buffer of a thin flow (at most 16 KiB per 100 ms each,
   * gateway/flow.ts): it goes ahead of the queue, so the queue's length does
   * not delay it; only the send buffer bounds it.
   */
  get hasRoomForUrgent(): boolean {
    return this.backlogBytes < this.#o.sendBufferBytes;
  }

  /** Bytes the queue takes before hasRoom turns false (0 when full). */
  get roomBytes(): number {
    return Math.max(0, Math.min(this.#queueLimit() - this.#queuedBytes, this.#o.sendBufferBytes - this.backlogBytes));
  }

  /** Asks for a 'drain' once there is room (a caller that was refused room elsewhere, e.g. by the peer link). */
  requestDrain(): void {
    this.#wantDrain = true;
    // The next tick says so (a quiet session's timer could be IDLE_TICK_MAX_MS away).
    this.#wake();
  }

  #queueLimit(): number {
    return Math.max(MIN_QUEUE_BYTES, (this.rate.pacingRateBps * QUEUE_MS) / 1000);
  }

  /** Everything sent has been acknowledged. */
  get idle(): boolean {
    return this.#unacked.size === 0;
  }

  /** Sends an acknowledgement now (authenticated, carrying no data): the initiator's first datagram, which confirms a new session to the responder. */
  keepalive(): void {
    if (this.#closed) return;
    this.#sendAckOnly(this.#now());
  }

  /** Tells the peer the session ends (one authenticated datagram; it may be lost, then the peer times out), then closes. */
  goodbye(): void {
    if (this.#closed) return;
    this.#goodbye = true;
    // Nothing repairs a lost goodbye (the mover closes next): a few copies make one arrive over a lossy path.
    const now = this.#now();
    for (let i = 0; i < GOODBYE_COPIES; i++) this.#sendAckOnly(now);
    this.close();
  }

  close(): void {
    this.#closed = true;
    // clearInterval and clearTimeout take either kind of timer.
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  // ---- receiving ----

  /**
   * A datagram from the network; `receivedAt` (this clock): when it was
   * read from the socket, if earlier than now. RTT samples and the ack
   * delay this side reports count from then, so the time it waited in this
   * process (for the event loop of a busy host) is not taken for a queue on
   * the path.
   */
  receive(datagram: Uint8Array, receivedAt?: number): void {
    if (this.#closed) return;
    let field: DataMoverField;
    let payloadOffset: number;
    try {
      ({ field, payloadOffset } = decodeDataMoverField(datagram));
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.stats.dropped.malformed++;
      return;
    }
    if (field.connectionId !== this.#o.localId) {
      this.stats.dropped.otherConnection++;
      return;
    }
    const physical = field.transport.physical;
    if (!this.#replay.check(physical)) {
      this.stats.dropped.replayed++;
      return;
    }
    // A view of the AEAD's scratch region: the reassembler copies what it keeps, before anything else is opened or sealed.
    const segment = openDatagram(this.#o.keys.receive, physical, datagram, payloadOffset, true);
    if (!segment) {
      this.stats.dropped.unauthenticated++;
      return;
    }
    this.#replay.accept(physical);
    // Authentic: it may owe an ack or bring one (only the peer wakes a quiet session).
    this.#wake();
    const now = this.#now();
    const arrived = receivedAt !== undefined && receivedAt < now ? receivedAt : now;
    this.stats.datagramsReceived++;
    this.stats.bytesReceived += datagram.length;
    this.#lastReceiveAt = now;
    if (this.#peerDown) {
      this.#peerDown = false;
      this.emit('up');
    }
    if (field.transport.flags & TD_GOODBYE) {
      // The peer ended the session (authenticated: only it can say so).
      this.emit('goodbye');
      return;
    }
    let { flags, logical } = field.transport;
    let bytes = segment;
    let data = (flags & TD_DATA) !== 0;
    if (flags & TD_PARITY) {
      // A parity datagram stands in for the one segment of its group that did not arrive (if exactly one).
      const rebuilt = this.#rebuild(segment);
      if (rebuilt) {
        ({ logical, bytes } = rebuilt);
        flags = TD_DATA | rebuilt.flags;
        data = true;
        this.stats.parityRecovered++;
      }
    } else if (data && flags & TD_PROTECTED) this.#kept.keep(logical, flags & (TD_BUFFER_START | TD_BUFFER_END), segment, now);
    let buffers: readonly Uint8Array[] = NO_BUFFERS;
    let refused = false;
    if (data) {
      const r = this.#reassembler;
      const duplicates = r.duplicates;
      const refusedBefore = r.refused;
      buffers = r.push({ logical, flags, bytes }, true);
      refused = r.refused > refusedBefore;
      if (r.duplicates > duplicates) this.stats.duplicates++;
      else if (!refused) {
        this.stats.payloadDelivered += bytes.length;
        this.#acks.delivered(bytes.length);
      }
      this.stats.segmentsRefused = r.refused;
      this.stats.buffersDropped = r.malformed + r.oversized;
      this.stats.reassemblyBytes = r.heldBytes;
    }
    // A refused segment is not acknowledged, even by its physical number: the sender counts it lost and sends it again.
    if (!refused) this.#acks.received(physical, arrived);
    if (field.ack && this.#onAck(field.ack, arrived)) this.rate.onHostDelay(field.ack.ackDelayUs / 1000 + (now - arrived));
    // A parity datagram is tracked in flight by its sender, so it asks for an ack like data (or the
    // sender's retransmission timer would expire on one that came after the last ack).
    if (data || flags & TD_PARITY) {
      this.#dataSinceAck++;
      if (!this.#ackDue) {
        this.#ackDue = true;
        this.#ackDueAt = now + this.#o.ackDelayMs;
      }
      // Every few data datagrams are acknowledged at once: the sender's clock runs on acks.
      if (this.#dataSinceAck >= ACK_EVERY) this.#sendAckOnly(now);
      for (const b of buffers) {
        this.stats.buffersDelivered++;
        this.emit('buffer', b);
      }
    }
    this.#pump();
  }

  /** The segment a parity datagram's payload rebuilds, if any; a payload that does not decode is counted (an authentic peer sent it: a bug, not an attack). */
  #rebuild(payload: Uint8Array): Segment | undefined {
    let parity: Parity;
    try {
      parity = decodeParity(payload);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.stats.dropped.malformed++;
      return undefined;
    }
    return this.#kept.rebuild(parity, (n) => this.#reassembler.has(n));
  }

  // ---- acknowledgements received ----

  /** True when the ack gave an RTT sample (it acknowledged the highest datagram the peer had received). */
  #onAck(ack: Ack, now: number): boolean {
    const sampled = this.#loss.onAck(ack, now);
    if (sampled) {
      this.#roundRtt = Math.min(this.#roundRtt, this.rtt.latestMs);
      this.#roundMaxRtt = Math.max(this.#roundMaxRtt, this.rtt.latestMs);
    }
    // Logical acknowledgements: everything below the cumulative point, and the bitmap.
    // Segments are inserted in logical order, so the cumulative part is a prefix.
    for (const logical of this.#unacked.keys()) {
      if (logical >= ack.cumulative) break;
      this.#unacked.delete(logical);
    }
    for (let i = 0; i < ack.bitmap.length * 8; i++) if (ack.bitmap[i >> 3]! & (1 << (i & 7))) this.#unacked.delete(ack.cumulative + 1 + i);
    this.#loss.detectLoss(now);
    this.rate.onAcked(this.#loss.bytesInFlight);
    if (this.#loss.largestAcked >= this.#roundEndPhysical) {
      this.rate.onRoundEnd(this.#loss.bytesInFlight, this.#roundRtt, this.#roundMaxRtt || Infinity, now);
      this.#roundEndPhysical = this.#nextPhysical;
      this.#roundRtt = Infinity;
      this.#roundMaxRtt = 0;
    }
    if (this.#wantDrain && this.hasRoom) {
      this.#wantDrain = false;
      this.emit('drain');
    }
    return sampled;
  }

  /** The loss detector gave up on a datagram: its segment goes again if still unacknowledged. */
  #onLost(logical: number): void {
    this.stats.lost++;
    if (this.#unacked.has(logical)) this.#retransmit.push(logical);
  }

  // ---- sending ----

  #tick(): void {
    const now = this.#now();
    // Retransmission timeout: nothing acknowledged for an RTO while data is out.
    if (this.#loss.checkTimeout(now)) this.stats.timeouts++;
    else {
      // The time threshold runs out between acks too (RFC 9002's loss timer): a thin flow's datagram
      // lost before its last one is otherwise found only by the next ack, which may never come.
      this.#loss.detectLoss(now);
      this.#probeTail(now);
    }
    if (!this.#peerDown && now - this.#lastReceiveAt > this.#o.deadAfterMs) {
      this.#peerDown = true;
      this.emit('down');
    }
    if (this.#ackDue && now >= this.#ackDueAt) this.#sendAckOnly(now);
    else if (now - this.#lastSendAt > this.#o.keepaliveMs) this.#sendAckOnly(now);
    this.#pump();
    if (!this.#closed && this.#quiet) this.#sleep(now);
  }

  /**
   * Tail loss probe (RFC 9002's probe timeout): the last segment sent is
   * still unacknowledged a PTO (SRTT + 4·RTTVAR + the peer's ack delay)
   * after it left, and nothing sent after it could show it lost, so it goes
   * again, once. A thin flow's last datagram lost otherwise waits for the
   * retransmission timeout (at least 200 ms, after the last ack): a
   * request/response took 415 ms instead of 200 on a 100 ms path. Its ack
   * shows any earlier loss through the usual thresholds.
   */
  #probeTail(now: number): void {
    if (this.#probed || !this.rtt.hasSamples || this.#loss.bytesInFlight === 0) return;
    if (now - this.#lastDataSendAt < this.rtt.srttMs + Math.max(4 * this.rtt.rttvarMs, 1) + this.#o.ackDelayMs) return;
    const seg = this.#unacked.get(this.#lastSentLogical);
    // The tail was acknowledged: the acks already show what was lost before it.
    if (!seg) return;
    this.#tokens -= this.#sendDatagram(seg, true, this.#appLimited, now);
    this.#probed = true;
    this.stats.probes++;
    this.stats.retransmissions++;
  }

  /** Nothing waits to be sent but what is going now: a sample taken now shows what the application offered, not the path. */
  get #appLimited(): boolean {
    return this.#queueHead >= this.#queue.length && this.#urgent.length === 0 && this.#retransmit.length === 0;
  }

  /** Sends what the pacer and the window allow: the urgent lane (#sendUrgent), then lost segments, then new ones. */
  #pump(): void {
    if (this.#closed) return;
    const now = this.#now();
    const rate = this.rate.pacingRateBps;
    // Credit accrues at the pacing rate. It is capped at BURST_MS of rate,
    // or at the time since the last tick when a tick came late (up to
    // CATCH_UP_MS): a late timer must not lower the average rate, or pacing
    // at the path's bandwidth would leave the link idle now and then.
    const elapsed = now - this.#lastTick;
    const cap = (Math.max(BURST_MS, Math.min(CATCH_UP_MS, elapsed)) * rate) / 1000 + this.#o.segmentSize;
    this.#tokens = Math.min(this.#tokens + (elapsed * rate) / 1000, cap);
    this.#lastTick = now;
    const window = this.rate.windowBytes;
    this.#sendUrgent(window, now);
    while (this.#tokens > 0 && this.#loss.bytesInFlight < window) {
      let seg: Segment | undefined;
      let retransmission = false;
      while (!seg && this.#retransmit.length) {
        const logical = this.#retransmit.shift()!;
        seg = this.#unacked.get(logical);
        if (seg) {
          retransmission = true;
          break;
        }
      }
      if (!seg) {
        if (this.#queueHead >= this.#queue.length) break;
        seg = this.#queue[this.#queueHead++]!;
        this.#queuedBytes -= seg.bytes.length;
        if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
          this.#queue.splice(0, this.#queueHead);
          this.#queueHead = 0;
        }
        // A segment acknowledged meanwhile (after a retransmission raced it) need not go.
        if (!this.#unacked.has(seg.logical)) continue;
      }
      const sent = this.#sendDatagram(seg, retransmission, this.#appLimited, now);
      this.#tokens -= sent;
      if (retransmission) this.stats.retransmissions++;
    }
    if (this.#wantDrain && this.hasRoom) {
      this.#wantDrain = false;
      this.emit('drain');
    }
  }

  /** The urgent lane, ahead of everything, within the window and the pacer's credit plus URGENT_ALLOWANCE_BYTES. */
  #sendUrgent(window: number, now: number): void {
    while (this.#urgent.length && this.#tokens > -URGENT_ALLOWANCE_BYTES && this.#loss.bytesInFlight < window + URGENT_ALLOWANCE_BYTES) {
      const seg = this.#urgent.shift()!;
      this.#queuedBytes -= seg.bytes.length;
      if (!this.#unacked.has(seg.logical)) continue;
      this.#tokens -= this.#sendDatagram(seg, false, this.#appLimited, now);
      if (seg.redundant) this.#parity.add(seg, now, PACER_TICK_MS);
    }
    // The redundancy of the urgent lane goes with it, on the same allowance: waiting for the
    // pacer's credit after a burst could take longer than the round trip it is meant to save.
    if (this.#parity.ready(now) && this.#tokens > -URGENT_ALLOWANCE_BYTES && this.#loss.bytesInFlight < window + URGENT_ALLOWANCE_BYTES) {
      // What was acknowledged meanwhile needs no protection; a group of one goes as a second copy.
      const members = this.#parity.take().filter((m) => this.#unacked.has(m.logical));
      const appLimited = this.#appLimited;
      const sent =
        members.length > 1 ? this.#sendParity(members, appLimited, now) : members.length === 1 ? this.#sendDatagram(members[0], true, appLimited, now) : 0;
      this.#tokens -= sent;
      if (sent > 0) {
        this.stats.redundantDatagrams++;
        this.stats.redundantBytes += sent;
      }
    }
  }

  #sendDatagram(seg: Segment | undefined, retransmission: boolean, appLimited: boolean, now: number): number {
    const physical = this.#nextPhysical++;
    // An ack rides on data only when data came in that is not acknowledged yet (a small one:
    // the segment needs the room); alone, it is full-sized. Acks are never acknowledged.
    const withAck = seg === undefined || this.#ackDue;
    const transport = {
      flags: seg ? TD_DATA | seg.flags | (retransmission ? TD_RETRANSMISSION : 0) | (seg.redundant ? TD_PROTECTED : 0) : this.#goodbye ? TD_GOODBYE : 0,
      logical: seg ? seg.logical : 0,
      physical,
    };
    const field: DataMoverField = withAck
      ? { connectionId: this.#o.peerId, transport, ack: this.#acks.build(now, seg ? PIGGYBACK_ACK : FULL_ACK, this.#nextPhysical, this.#reassembler) }
      : { connectionId: this.#o.peerId, transport };
    const n = writeDataMoverField(this.#field, field);
    const datagram = sealDatagram(this.#o.keys.send, physical, this.#field.subarray(0, n), seg ? seg.bytes : EMPTY_SEGMENT, this.#o.transmitCopies);
    this.#o.transmit(datagram);
    const bytes = datagram.length;
    this.stats.datagramsSent++;
    this.stats.bytesSent += bytes;
    this.#lastSendAt = now;
    if (withAck) {
      this.#ackDue = false;
      this.#dataSinceAck = 0;
    }
    // Ack-only datagrams are not tracked: nothing acknowledges them when the peer has no data to send.
    if (seg) {
      this.#loss.onSent(physical, seg.logical, bytes, appLimited, now);
      this.#lastSentLogical = seg.logical;
      this.#lastDataSendAt = now;
      this.#probed = false;
    }
    return bytes;
  }

  /**
   * One parity datagram over `members` (2 or more, all unacknowledged). It
   * is tracked in flight like data, so its acknowledgement gives a delivery
   * sample and a sender whose estimate came from what its thin flows offer
   * paces the redundancy too (untracked, it took the originals' pacing
   * credit: requests waited a round trip more); lost, nothing resends it.
   */
  #sendParity(members: readonly Segment[], appLimited: boolean, now: number): number {
    const physical = this.#nextPhysical++;
    const n = writeDataMoverField(this.#field, { connectionId: this.#o.peerId, transport: { flags: TD_PARITY, logical: 0, physical } });
    const datagram = sealDatagram(this.#o.keys.send, physical, this.#field.subarray(0, n), encodeParity(members), this.#o.transmitCopies);
    this.#o.transmit(datagram);
    this.stats.datagramsSent++;
    this.stats.bytesSent += datagram.length;
    this.#lastSendAt = now;
    this.#loss.onSent(physical, PARITY_LOGICAL, datagram.length, appLimited, now);
    return datagram.length;
  }

  #sendAckOnly(now: number): void {
    this.#sendDatagram(undefined, false, true, now);
  }
}
