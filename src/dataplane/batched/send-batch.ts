/**
 * A SendVector plus what each of its messages means for the counters
 * (which destination, how many packets and bytes, GSO or not), and the
 * error policy of the batched tier:
 *
 * - Copies are counted as sent *before* sendmmsg, so a receiver never sees
 *   a packet that the counters do not yet show; refused copies are then
 *   moved from `packetsOut` to their drop reason.
 * - sendmmsg stops at the first message it cannot send. The rest are
 *   retried from there: one refused destination never holds up the others.
 * - EAGAIN/ENOBUFS (socket buffer or device queue full) wait for the socket
 *   to become writable within a per-flush time budget; past it the copy is
 *   dropped as `queueFull`.
 * - EIO/EINVAL/EMSGSIZE on a GSO message switch GSO off for that
 *   destination (latched, visible in its counters) and resend its packets
 *   one by one; the same errors on a plain message are `sendError`s.
 * - Every other errno is a `sendError` of that destination, kept as lastError.
 * - The listen socket reads ICMP errors (IP_RECVERR), so the kernel also
 *   keeps the last one as the socket's pending error, which the next send
 *   returns instead of sending, whatever its destination. A message
 *   refused with an errno an ICMP error can carry (STALE_SOCKET_ERRNOS) is
 *   therefore sent again (twice at most) before the errno is believed: the
 *   refusal consumed the pending error, so a stale one does not come back,
 *   and a real one (no route) does. Within one sendmmsg the kernel hides
 *   such a refusal behind a partial count, and the resend follows anyway.
 *
 * The loop itself is sys/batch-send.ts's sendAll; this class is its policy.
 */
import { SendVector, type MessageInfo, type SendmmsgFn } from '../../sys/send-vector.js';
import { Poller } from '../../sys/poller.js';
import { sendAll, type BatchSendPolicy } from '../../sys/batch-send.js';
import { POLLOUT } from '../../sys/constants.js';
import { D, F, bump } from './shared-counters.js';

/** A destination as the batch sees it: where to send and whose counters to move. */
export interface BatchDestination {
  readonly counters: Float64Array;
  readonly nameAddress: number;
  readonly nameLength: number;
}

/** Packets of the flow being flushed: absolute addresses and lengths. */
export interface PacketList {
  readonly address: Float64Array;
  readonly length: Int32Array;
}

/** Resends of one message refused with an errno a pending ICMP error could carry. */
const MAX_STALE_RESENDS = 2;
/** Waits for a full socket to become writable before one message is dropped (each within the flush's budget). */
const MAX_FULL_WAITS = 8;

export class SendBatch {
  readonly #vec: SendVector;
  readonly #dest: (BatchDestination | undefined)[];
  readonly #first: Int32Array;
  readonly #count: Int32Array;
  readonly #bytes: Float64Array;
  readonly #gso: Int32Array;
  readonly #writable = new Poller();
  /** The run whose iovecs were written last (shared by consecutive messages). */
  #runPackets: PacketList | undefined;
  #runFirst = 0;
  #runCount = 0;
  #runBytes = 0;
  #runIov = -1;

  // What the policy's hooks work on while transmit() runs (set at its start).
  #fd = -1;
  #flow: Float64Array = new Float64Array(0);
  #packets: PacketList | undefined;
  #budget = { ns: 0 };
  #fallback: SendBatch | undefined;
  /** The error policy (see the top of this file), one object for the life of the batch. */
  readonly #policy: BatchSendPolicy = {
    staleResends: MAX_STALE_RESENDS,
    onCall: () => bump(this.#flow, F.sendCalls),
    onFull: (_at, _errno, attempt) => (attempt < MAX_FULL_WAITS && this.#waitWritable(this.#fd, this.#budget) ? 'retry' : 'drop'),
    onGsoRefused: (at) => {
      const fallback = this.#fallback;
      if (!(this.#gso[at]! > 0) || !fallback) return false;
      const dest = this.#dest[at]!;
      dest.counters[D.gsoOff] = 1;
      this.#uncount(at, this.#flow);
      fallback.sendSingly(this.#fd, dest, this.#packets!, this.#first[at]!, this.#count[at]!, this.#flow, this.#budget);
      return true;
    },
    onRefused: (at, errno, why) => {
      if (why === 'full') this.#drop(at, this.#flow, F.queueFull, D.queueFull, 0);
      else this.#drop(at, this.#flow, F.sendError, D.sendError, errno);
    },
  };

  constructor(maxMessages: number, maxIovecs: number, sendmmsg?: SendmmsgFn) {
    this.#vec = new SendVector(maxMessages, maxIovecs, sendmmsg);
    this.#dest = new Array<BatchDestination | undefined>(maxMessages);
    this.#first = new Int32Array(maxMessages);
    this.#count = new Int32Array(maxMessages);
    this.#bytes = new Float64Array(maxMessages);
    this.#gso = new Int32Array(maxMessages);
  }

  get pending(): number {
    return this.#vec.count;
  }

  /** Message `i` of the vector being built (tests, diagnostics). */
  messageInfo(i: number): MessageInfo {
    return this.#vec.messageInfo(i);
  }

  /**
   * Queues packets [first, first+count) of `packets` to `dest`: one message
   * carrying them all with segment size `gsoSize`, or (gsoSize 0, count 1)
   * a plain datagram. The caller checked `hasRoomFor`. Consecutive
   * calls for the same packets (one per destination) share one set of
   * iovecs.
   */
  add(dest: BatchDestination, packets: PacketList, first: number, count: number, gsoSize: number): void {
    if (this.#runPackets !== packets || this.#runFirst !== first || this.#runCount !== count || this.#runIov < 0) {
      this.#runIov = this.#vec.addIovecs(packets.address, packets.length, first, count);
      let bytes = 0;
      for (let p = first; p < first + count; p++) bytes += packets.length[p]!;
      this.#runPackets = packets;
      this.#runFirst = first;
      this.#runCount = count;
      this.#runBytes = bytes;
    }
    const i = this.#vec.beginWith(dest.nameAddress, dest.nameLength, gsoSize, this.#runIov, count);
    this.#dest[i] = dest;
    this.#first[i] = first;
    this.#count[i] = count;
    this.#bytes[i] = this.#runBytes;
    this.#gso[i] = gsoSize;
  }

  /** True when a message for the run being added (or a new one of `iovecs` buffers) fits. */
  hasRoomFor(packets: PacketList, first: number, count: number): boolean {
    const shared = this.#runIov >= 0 && this.#runPackets === packets && this.#runFirst === first && this.#runCount === count;
    return shared ? this.#vec.hasMessageRoom() : this.#vec.hasRoom(count);
  }

  /**
   * Sends everything queued on `fd`. `budget.ns` is the time this flush may
   * still spend waiting for a full socket buffer; it is shared by every
   * call of one flush so a stuck socket costs a bounded time per flush.
   */
  transmit(fd: number, flow: Float64Array, packets: PacketList, budget: { ns: number }, fallback: SendBatch | undefined): void {
    const n = this.#vec.count;
    if (n === 0) return;
    for (let i = 0; i < n; i++) {
      const c = this.#dest[i]!.counters;
      bump(c, D.packetsOut, this.#count[i]!);
      bump(c, D.bytesOut, this.#bytes[i]!);
      bump(flow, F.packetsOut, this.#count[i]!);
      bump(flow, F.bytesOut, this.#bytes[i]!);
      if (this.#gso[i]! > 0) {
        bump(flow, F.gsoMessages);
        bump(flow, F.gsoSegments, this.#count[i]!);
      }
    }
    this.#fd = fd;
    this.#flow = flow;
    this.#packets = packets;
    this.#budget = budget;
    this.#fallback = fallback;
    sendAll(this.#vec, fd, this.#policy);
    this.#packets = undefined;
    this.#fallback = undefined;
    this.#vec.clear();
    this.#runIov = -1;
  }

  /** Resends packets of a refused GSO message as plain datagrams. */
  sendSingly(fd: number, dest: BatchDestination, packets: PacketList, first: number, count: number, flow: Float64Array, budget: { ns: number }): void {
    for (let p = first; p < first + count; p++) {
      if (!this.hasRoomFor(packets, p, 1)) this.transmit(fd, flow, packets, budget, undefined);
      this.add(dest, packets, p, 1, 0);
    }
    this.transmit(fd, flow, packets, budget, undefined);
  }

  #uncount(i: number, flow: Float64Array): void {
    const c = this.#dest[i]!.counters;
    bump(c, D.packetsOut, -this.#count[i]!);
    bump(c, D.bytesOut, -this.#bytes[i]!);
    bump(flow, F.packetsOut, -this.#count[i]!);
    bump(flow, F.bytesOut, -this.#bytes[i]!);
    if (this.#gso[i]! > 0) {
      bump(flow, F.gsoMessages, -1);
      bump(flow, F.gsoSegments, -this.#count[i]!);
    }
  }

  #drop(i: number, flow: Float64Array, flowReason: number, destReason: number, errno: number): void {
    this.#uncount(i, flow);
    const c = this.#dest[i]!.counters;
    bump(c, destReason, this.#count[i]!);
    bump(flow, flowReason, this.#count[i]!);
    if (errno) c[D.lastErrno] = errno;
  }

  #waitWritable(fd: number, budget: { ns: number }): boolean {
    if (budget.ns <= 0) return false;
    const t0 = performance.now();
    this.#writable.set([fd], [POLLOUT]);
    const ready = this.#writable.wait(Math.min(budget.ns, 1_000_000)) > 0;
    budget.ns -= (performance.now() - t0) * 1e6;
    return ready;
  }
}
