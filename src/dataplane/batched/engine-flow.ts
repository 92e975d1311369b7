/* eslint-disable max-lines -- one flow's per-datagram hot path (check, hold, GSO runs, flush) is one closure-free class over shared state */
/**
 * One redirect/replicate flow inside the batched worker: its sockets, its
 * compiled source check, its destinations (sockaddrs in native memory) and
 * the datagrams it holds until the next flush.
 *
 * Receive path: each datagram (or each segment of a GRO super-buffer) is
 * checked — allowed source, size, payload format — and, if accepted, only
 * its position in the receive slot is recorded. Flush: the held datagrams
 * are cut into runs that GSO can carry (equal sizes, the last may be
 * shorter), and every destination gets one message per run whose iovecs
 * point at the same receive slots: replication never copies a payload.
 */
import { createSockaddrMatcher } from '../../policy/source-filter.js';
import { formatEndpoint, isWildcard, type Endpoint } from '../../wire/endpoint.js';
import type { FlowPlan } from '../../policy/compile.js';
import { payloadFormatOk, type PayloadFormat } from '../../wire/payload-format.js';
import { RawUdpSocket } from '../../sys/udp-socket.js';
import { NativeRegion } from '../../sys/memory.js';
import { writeSockaddr } from '../../sys/sockaddr.js';
import type { RecvRing } from '../../sys/recv-ring.js';
import { SLOT_SIZE } from '../../sys/recv-ring.js';
import { SOCKADDR_SPACE, SOL_UDP, UDP_GRO } from '../../sys/constants.js';
import { GSO_MAX_SEGMENT } from '../../sys/batch-send.js';
import { MAX_UDP_PAYLOAD } from '../../wire/udp.js';
import { D, F, bump } from './shared-counters.js';
import type { DestinationBinding, EngineOptions } from './protocol.js';
import type { BatchDestination, PacketList, SendBatch } from './send-batch.js';
import { OwnSockets } from '../common/own-sockets.js';
import { SubscriberHealth, samePolicy } from '../common/subscriber-health.js';
import { ErrorQueueReader, enableRecvErr } from '../../sys/error-queue.js';
import { canonicalAddress, unmapAddress } from '../../wire/endpoint.js';
import { readSockaddr } from '../../sys/sockaddr.js';
import { joinListenGroup, setFlowMulticastOutput } from './multicast.js';

/**
 * Segments per GRO buffer the held-datagram arrays are first sized for: the
 * most a NIC coalesces (UDP_GRO_CNT_MAX). Not a limit: loopback and veth
 * hand a sender's GSO message over whole, up to the sending kernel's
 * UDP_MAX_SEGMENTS (128 since Linux 6.9, and nothing says it stays there),
 * so the arrays grow when a receive brings more.
 */
const GRO_SEGMENTS_HINT = 64;

interface Destination extends BatchDestination {
  /** `udp://HOST:PORT` */
  readonly key: string;
  /** Suspension state (policy suspendAfterErrors), kept across plan updates. */
  readonly health: SubscriberHealth | undefined;
  /** False when `health` belongs to the flow this one sends through: that flow decides and reports. */
  readonly ownsHealth: boolean;
  /** Suspended for the flush in progress. */
  off: boolean;
}

/** A suspension starts (until > 0) or ends (until = 0); `to` is the destination's `udp://HOST:PORT`. */
export type SuspensionListener = (flow: string, to: string, until: number) => void;

/** How ICMP errors name a destination: address (IPv4 unmapped, canonical IPv6) and port. */
function nameKey(address: string, port: number): string {
  return `${canonicalAddress(unmapAddress(address))}|${port}`;
}

/** Destinations sent through one socket (sendmmsg is per socket). */
interface SocketGroup {
  readonly socket: RawUdpSocket;
  readonly destinations: readonly Destination[];
}

export class EngineFlow {
  readonly name: string;
  readonly counters: Float64Array;
  readonly socket: RawUdpSocket;
  readonly listen: Endpoint;
  readonly #options: EngineOptions;
  readonly #aux = new Map<4 | 6, RawUdpSocket>();
  /** Every flow socket of the engine: a datagram from one of them is a relay loop. */
  readonly #own: OwnSockets;
  /** Unregisters this flow's sockets from #own. */
  readonly #disown: (() => void)[] = [];
  /** Error-queue readers of the sockets that have IP_RECVERR on, by fd. */
  readonly #errors = new Map<number, ErrorQueueReader>();
  /** Destinations by the address ICMP errors name them with. */
  #byName = new Map<string, Destination>();
  readonly #notify: SuspensionListener | undefined;
  /** Some destination may be suspended: the flush checks. */
  #suspendable = false;
  #plan: FlowPlan;
  #accept: (bytes: Uint8Array, offset: number) => boolean;
  #groups: readonly SocketGroup[] = [];
  /** Keeps the sockaddr memory alive while messages may point into it. */
  #names: NativeRegion | undefined;
  #gro = false;
  /** The flow whose sockets send this one's copies (itself, unless opened with `via`). */
  readonly #sender: EngineFlow;

  // Held datagrams: positions in the receive pool, and the slots they use.
  #packets: PacketList;
  readonly #packetsInitial: number;
  #held = 0;
  readonly #slots: Int32Array;
  #slotCount = 0;
  /** performance.now() when the oldest held datagram arrived. */
  heldSince = 0;

  private constructor(
    name: string,
    plan: FlowPlan,
    socket: RawUdpSocket,
    listen: Endpoint,
    counters: Float64Array,
    options: EngineOptions,
    via: EngineFlow | undefined,
    own: OwnSockets,
    notify: SuspensionListener | undefined,
  ) {
    this.name = name;
    this.#sender = via ?? this;
    this.#own = own;
    this.#notify = notify;
    this.#plan = plan;
    this.socket = socket;
    this.listen = listen;
    this.counters = counters;
    this.#options = options;
    this.#accept = createSockaddrMatcher(plan.sources);
    // Below the threshold a full batch of messages is read (no dribbling one
    // datagram at a time), and each message may be a GRO buffer: room for
    // batch − 1 held plus a batch of typical GRO buffers; #hold grows it.
    this.#packetsInitial = options.batch * (GRO_SEGMENTS_HINT + 1);
    this.#packets = newPacketList(this.#packetsInitial);
    this.#slots = new Int32Array(2 * options.batch);
  }

  /**
   * Opens and binds the listen socket; throws SyscallError and leaves
   * nothing open. With `via`, copies are sent through that flow's sockets
   * (which must outlive this flow), so they leave from its listen port;
   * with `onlyMark`, only datagrams with that skb mark are received.
   * `own`: the engine's registry of flow sockets (relay-loop check); a
   * flow opened alone gets its own.
   * `notify` hears of every suspension and resumption of a destination.
   */
  static open(
    name: string,
    plan: FlowPlan,
    counters: Float64Array,
    bindings: readonly DestinationBinding[],
    options: EngineOptions,
    extra: { via?: EngineFlow; onlyMark?: number; reusePort?: boolean; own?: OwnSockets; notify?: SuspensionListener } = {},
  ): EngineFlow {
    const own = extra.own ?? new OwnSockets();
    const socket = RawUdpSocket.open(plan.listen.family);
    let flow: EngineFlow | undefined;
    try {
      socket.setBuffers(options.socketBufferBytes);
      if (extra.onlyMark !== undefined) socket.acceptOnlyMark(extra.onlyMark);
      if (extra.reusePort) socket.setReusePort();
      socket.bind(plan.listen);
      if (plan.multicast) joinListenGroup(socket, plan.multicast);
      setFlowMulticastOutput(socket, plan.multicastOut, isWildcard(plan.listen));
      const bound = socket.localEndpoint();
      const listen: Endpoint = { ...plan.listen, port: bound.port };
      flow = new EngineFlow(name, plan, socket, listen, counters, options, extra.via, own, extra.notify);
      // Copies from a socket bound to a group leave from an interface's address, as from a wildcard.
      flow.#disown.push(own.add(plan.multicast ? { ...listen, address: listen.family === 4 ? '0.0.0.0' : '::' } : listen));
      flow.#watchErrors(socket);
      if (options.gro) {
        try {
          socket.setInt(SOL_UDP, UDP_GRO, 1);
          flow.#gro = true;
        } catch {
          // The probe said yes; a refusal here only costs the coalescing.
        }
      }
      flow.#setDestinations(bindings);
      return flow;
    } catch (e) {
      if (flow) flow.close();
      else socket.close();
      throw e;
    }
  }

  get held(): number {
    return this.#held;
  }

  /**
   * Every socket whose error queue this flow reads: the engine polls them
   * (POLLERR) and calls readErrors when one reports it.
   */
  errorFds(): number[] {
    return [...this.#errors.keys()];
  }

  /**
   * Reads the ICMP errors queued on `fd` (one of errorFds) and charges
   * them to the destinations they name: drops.unreachable, lastError, and
   * the suspension policy. Never blocks; reads at most a few hundred, so a
   * flood of errors cannot starve the loop (POLLERR stays set for the rest).
   */
  readErrors(fd: number, now: number): void {
    const reader = this.#errors.get(fd);
    if (!reader) return;
    reader.drain((name, err) => {
      let dest: Destination | undefined;
      try {
        const ep = readSockaddr(name, 0);
        dest = this.#byName.get(nameKey(ep.address, ep.port));
      } catch {
        dest = undefined;
      }
      if (!dest) {
        bump(this.counters, F.icmpUnmatched);
        return;
      }
      bump(dest.counters, D.unreachable);
      bump(this.counters, F.unreachable);
      dest.counters[D.lastErrno] = err.errno;
      if (dest.health?.onError(now)) {
        dest.counters[D.suspendedUntil] = dest.health.suspendedUntil;
        this.#notify?.(this.name, dest.key, dest.health.suspendedUntil);
      }
    });
    // Whatever the queue held, no send may fail later for an error read here.
    reader.clearPendingError();
  }

  /**
   * Ends the suspensions whose wait is over at `now`; returns when the
   * next one ends (Infinity if none is suspended).
   */
  resumeDue(now: number): number {
    if (!this.#suspendable) return Infinity;
    let next = Infinity;
    for (const d of this.#byName.values()) {
      const h = d.health;
      if (!h?.isSuspended() || !d.ownsHealth) continue;
      if (h.resumeIfDue(now)) {
        d.counters[D.suspendedUntil] = 0;
        this.#notify?.(this.name, d.key, 0);
      } else next = Math.min(next, h.suspendedUntil);
    }
    return next;
  }

  /**
   * Another worker of this flow suspended (until > 0) or resumed (0) the
   * destination `to` (`udp://HOST:PORT`): the same here, without a
   * notification (the other worker made it). False if `to` is unknown or
   * has no suspension policy.
   */
  mirrorSuspension(to: string, until: number, now: number): boolean {
    for (const d of this.#byName.values()) {
      if (d.key !== to || !d.health || !d.ownsHealth) continue;
      if (d.health.mirror(until, now)) d.counters[D.suspendedUntil] = until;
      return true;
    }
    return false;
  }

  /** New plan from the application; held datagrams were flushed by the caller. */
  update(plan: FlowPlan, bindings: readonly DestinationBinding[]): void {
    if (JSON.stringify(plan.multicastOut) !== JSON.stringify(this.#plan.multicastOut)) {
      setFlowMulticastOutput(this.socket, plan.multicastOut, isWildcard(this.listen));
      for (const s of this.#aux.values()) setFlowMulticastOutput(s, plan.multicastOut, false);
    }
    this.#plan = plan;
    this.#accept = createSockaddrMatcher(plan.sources);
    this.#setDestinations(bindings);
  }

  /**
   * Receives one batch (recvmmsg) and holds what passes the checks.
   * Returns true when the flow reached its flush threshold.
   */
  receive(ring: RecvRing): boolean {
    const c = this.counters;
    if (this.#held >= this.#options.batch) return true;
    const n = ring.receive(this.socket.fd, this.#options.batch, this.#gro);
    if (n === 0) return false;
    bump(c, F.recvCalls);
    const bytes = ring.data.bytes;
    const meta = ring.metaBytes;
    const plan = this.#plan;
    const max = plan.maxDatagramSize;
    const format = plan.payload;
    for (let j = 0; j < n; j++) {
      const slot = ring.slotOf(j);
      const len = ring.lengthOf(j);
      const base = slot * SLOT_SIZE;
      const seg = this.#gro ? ring.groSegment(j) : 0;
      const segs = seg > 0 && seg < len ? Math.ceil(len / seg) : 1;
      if (segs > 1) bump(c, F.groBuffers);
      bump(c, F.packetsIn, segs);
      bump(c, F.bytesIn, len);
      if (this.#own.isOwnSockaddr(meta, ring.nameOffset(slot))) {
        bump(c, F.relayLoop, segs);
        ring.release(slot);
        continue;
      }
      if (!this.#accept(meta, ring.nameOffset(slot))) {
        bump(c, F.sourceNotAllowed, segs);
        ring.release(slot);
        continue;
      }
      if (ring.truncated(j)) {
        // Longer than a slot: only possible without GRO, and above any allowed size.
        bump(c, F.tooLarge);
        ring.release(slot);
        continue;
      }
      const held = this.#held;
      if (segs === 1) this.#check(bytes, base, len, max, format, ring.data.address);
      else for (let off = 0; off < len; off += seg) this.#check(bytes, base + off, Math.min(seg, len - off), max, format, ring.data.address);
      if (this.#held === held) ring.release(slot);
      else {
        this.#slots[this.#slotCount++] = slot;
        if (held === 0) this.heldSince = performance.now();
      }
    }
    return this.#held >= this.#options.batch || this.#slotCount >= this.#options.batch;
  }

  /** Applies the size and payload checks to one datagram; holds it if it passes. */
  #check(bytes: Uint8Array, offset: number, length: number, max: number, format: PayloadFormat, poolAddress: number): void {
    if (length > max) bump(this.counters, F.tooLarge);
    else if (!payloadFormatOk(format, bytes, offset, length)) bump(this.counters, F.malformed);
    else this.#hold(poolAddress + offset, length);
  }

  #hold(address: number, length: number): void {
    // A typed array ignores writes past its end: without room the datagram
    // would be sent as whatever the slot held (zero bytes) or not at all.
    if (this.#held === this.#packets.length.length) this.#packets = grownPacketList(this.#packets, this.#held);
    this.#packets.address[this.#held] = address;
    this.#packets.length[this.#held] = length;
    this.#held++;
  }

  /**
   * Sends every held datagram to every destination, then returns the
   * receive slots to the pool.
   */
  flush(ring: RecvRing, batch: SendBatch, fallback: SendBatch, budget: { ns: number }): void {
    const k = this.#held;
    if (k === 0) return;
    const p = this.#packets;
    const o = this.#options;
    const gsoLimit = o.gso ? Math.min(o.gsoMaxSegments, 128) : 1;
    if (this.#suspendable) for (const group of this.#groups) for (const d of group.destinations) d.off = d.health?.isSuspended() ?? false;
    for (const group of this.#groups) {
      const fd = group.socket.fd;
      const gsoMaxSeg = GSO_MAX_SEGMENT[group.socket.family];
      for (let a = 0; a < k;) {
        const s = p.length[a]!;
        let b = a + 1;
        if (gsoLimit > 1 && s > 0 && s <= gsoMaxSeg) {
          let total = s;
          while (b < k && b - a < gsoLimit) {
            const l = p.length[b]!;
            if (l > s || l === 0 || total + l > MAX_UDP_PAYLOAD) break;
            total += l;
            b++;
            if (l < s) break; // only the last segment may be shorter
          }
        }
        const run = b - a;
        for (const d of group.destinations) {
          if (d.off) {
            bump(d.counters, D.suspended, run);
            bump(this.counters, F.suspended, run);
            continue;
          }
          if (run > 1 && d.counters[D.gsoOff] === 0) {
            if (!batch.hasRoomFor(p, a, run)) batch.transmit(fd, this.counters, p, budget, fallback);
            batch.add(d, p, a, run, s);
          } else {
            for (let i = a; i < b; i++) {
              if (!batch.hasRoomFor(p, i, 1)) batch.transmit(fd, this.counters, p, budget, fallback);
              batch.add(d, p, i, 1, 0);
            }
          }
        }
        a = b;
      }
      batch.transmit(fd, this.counters, p, budget, fallback);
    }
    this.#releaseHeld(ring);
  }

  /** Returns the held slots to the pool; arrays grown for an unusual burst go back to their usual size. */
  #releaseHeld(ring: RecvRing): void {
    for (let i = 0; i < this.#slotCount; i++) ring.release(this.#slots[i]!);
    this.#slotCount = 0;
    this.#held = 0;
    if (this.#packets.length.length > 4 * this.#packetsInitial) this.#packets = newPacketList(this.#packetsInitial);
  }

  /** Drops held datagrams without sending (flow removed while the engine fails). */
  discard(ring: RecvRing): void {
    this.#releaseHeld(ring);
  }

  /** Every socket this flow holds (the listen socket first). */
  fds(): number[] {
    return [this.socket.fd, ...[...this.#aux.values()].map((s) => s.fd)];
  }

  close(): void {
    for (const disown of this.#disown.splice(0)) disown();
    this.#errors.clear();
    this.socket.close();
    for (const s of this.#aux.values()) s.close();
    this.#aux.clear();
  }

  /**
   * Writes every destination's sockaddr once and groups destinations by
   * the socket they leave from: the listen socket for its own family (and
   * IPv4 on a dual-stack `::` listen, as IPv4-mapped), otherwise a per-flow
   * socket of the other family on an ephemeral port — as the portable tier.
   */
  #setDestinations(bindings: readonly DestinationBinding[]): void {
    const names = new NativeRegion(Math.max(1, bindings.length) * SOCKADDR_SPACE);
    const bySocket = new Map<RawUdpSocket, Destination[]>();
    const sender = this.#sender;
    const policy = this.#plan.suspend;
    const before = this.#byName;
    const byName = new Map<string, Destination>();
    bindings.forEach((b, i) => {
      const ep = b.endpoint;
      let socket = sender.socket;
      let family: 4 | 6 = sender.listen.family;
      if (ep.family !== sender.listen.family && !(ep.family === 4 && isWildcard(sender.listen))) {
        socket = sender.#auxSocket(ep.family);
        family = ep.family;
      }
      const nameLength = writeSockaddr(names.bytes, i * SOCKADDR_SPACE, family, ep.address, ep.port);
      const list = bySocket.get(socket) ?? [];
      const name = nameKey(ep.address, ep.port);
      // A flow that sends through another's sockets (the kernel tier's
      // spill flow) follows that flow's suspensions: the ICMP errors of its
      // copies come back to those sockets.
      const shared = sender !== this ? sender.#byName.get(name)?.health : undefined;
      // A destination kept by an update keeps its suspension state, unless the policy changed.
      const old = before.get(name);
      const health =
        shared ?? (policy ? (old?.health && old.ownsHealth && samePolicy(old.health.policy, policy) ? old.health : new SubscriberHealth(policy)) : undefined);
      if (old?.ownsHealth && old.health?.isSuspended() && old.health !== health) {
        b.counters[D.suspendedUntil] = 0;
        this.#notify?.(this.name, formatEndpoint(ep), 0);
      }
      const dest: Destination = {
        key: formatEndpoint(ep),
        counters: b.counters,
        nameAddress: names.address + i * SOCKADDR_SPACE,
        nameLength,
        health,
        ownsHealth: shared === undefined,
        off: false,
      };
      list.push(dest);
      byName.set(name, dest);
      bySocket.set(socket, list);
    });
    this.#byName = byName;
    this.#suspendable = policy !== undefined;
    this.#names = names;
    this.#groups = [...bySocket].map(([socket, destinations]) => ({ socket, destinations }));
  }

  /** IP_RECVERR on, so the ICMP errors the socket's copies draw are read (error-queue.ts). */
  #watchErrors(socket: RawUdpSocket): void {
    try {
      enableRecvErr(socket.fd, socket.family);
      this.#errors.set(socket.fd, new ErrorQueueReader(socket.fd));
    } catch {
      // A kernel that refuses it only costs the unreachable counts.
    }
  }

  #auxSocket(family: 4 | 6): RawUdpSocket {
    let s = this.#aux.get(family);
    if (!s) {
      s = RawUdpSocket.open(family);
      try {
        s.setBuffers(this.#options.socketBufferBytes);
        // Bound now (not by the first send) so its port is known: copies it
        // sends that come back to a flow are recognised as a loop.
        s.bind({ family, address: family === 4 ? '0.0.0.0' : '::', port: 0 });
        setFlowMulticastOutput(s, this.#plan.multicastOut, false);
        this.#disown.push(this.#own.add(s.localEndpoint()));
        this.#watchErrors(s);
      } catch (e) {
        s.close();
        throw e;
      }
      // Never read: datagrams arriving on its ephemeral port are not relayed.
      this.#aux.set(family, s);
    }
    return s;
  }
}

function newPacketList(capacity: number): PacketList {
  return { address: new Float64Array(capacity), length: new Int32Array(capacity) };
}

/** A list with twice the room holding the first `used` entries of `p` (a new object: no send batch refers to it yet). */
function grownPacketList(p: PacketList, used: number): PacketList {
  const next = newPacketList(Math.max(1, p.length.length) * 2);
  next.address.set(p.address.subarray(0, used));
  next.length.set(p.length.subarray(0, used));
  return next;
}
