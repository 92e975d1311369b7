/**
 * The IP-level WAN emulator's forwarding loop, run in a worker thread so
 * that nothing (timers, stdout, GC of the main thread) delays a frame's
 * release: two AF_PACKET sockets, one per veth, and per direction a ring of
 * frame slots that is at once the bottleneck queue and the delay line.
 *
 * Per direction the model (ip-lane.ts) gives every frame a departure time
 * that never decreases, so the ring is a FIFO: frames are received straight
 * into the next free slots (recvmmsg, no copy), dropped ones are squeezed
 * out by moving the later frames of the same batch down, and due frames
 * leave from the head with sendmmsg pointing at the slots themselves. Each
 * slot has a prebuilt receive and send mmsghdr, so a batch is one call with
 * a pointer into a vector and nothing is written per frame but its length.
 *
 * Timing: one ppoll over both sockets and a wake-up eventfd, with a
 * nanosecond timeout to the earliest due frame; this thread's timer slack is
 * 1 ns and its nice value is raised, so it wakes within tens of microseconds
 * of a due time on an idle CPU. How late every frame actually left is kept
 * in a histogram (counters `lateness*`): the emulator reports its own error.
 */
import { libc } from '../../src/sys/ffi.js';
import { EAGAIN, ENOBUFS, syscallError } from '../../src/sys/errno.js';
import { MMSG, MSG_DONTWAIT, MSG_TRUNC, POLLIN, SIZEOF_IOVEC, SIZEOF_MMSGHDR, SIZEOF_VIRTIO_NET_HDR } from '../../src/sys/constants.js';
import { NativeRegion } from '../../src/sys/memory.js';
import { PacketSocket } from './packet-socket.js';
import { Poller, Waker } from '../../src/sys/poller.js';
import { DROP_BURST, DROP_QUEUE, ETH_HEADER, WanLane } from './ip-lane.js';
import { C, HOLD_NONE, LANE_FIELDS, LATENESS_EDGES_MS, type IpWanWorkerData } from './ip-emulator-protocol.js';

/** Room for the virtio header and a 1500-byte-MTU frame (with VLAN tags), rounded to a page half. */
export const SLOT_BYTES = 2048;
const BATCH = 64;
const MAX_WAIT_NS = 100_000_000;
/** After EAGAIN/ENOBUFS on send, retry this soon (the veth peer's backlog drains fast). */
const RETRY_NS = 200_000;
const STATS_EVERY_MS = 500;
const PR_SET_TIMERSLACK = 29;
const PRIO_PROCESS = 0;
const SCHED_FIFO = 1;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_ARP = 0x0806;
const VNET = SIZEOF_VIRTIO_NET_HDR;

class Ring {
  readonly data: NativeRegion;
  readonly bytes: Uint8Array;
  readonly rxVec: NativeRegion;
  readonly txVec: NativeRegion;
  readonly #rxIov: NativeRegion;
  readonly txIov: NativeRegion;
  readonly due: Float64Array;
  /** Whole length (virtio header + frame) of each held slot. */
  readonly len: Int32Array;
  head = 0;
  tail = 0;
  count = 0;

  constructor(readonly slots: number) {
    this.data = new NativeRegion(slots * SLOT_BYTES);
    this.bytes = this.data.bytes;
    this.#rxIov = new NativeRegion(slots * SIZEOF_IOVEC);
    this.txIov = new NativeRegion(slots * SIZEOF_IOVEC);
    this.rxVec = new NativeRegion(slots * SIZEOF_MMSGHDR);
    this.txVec = new NativeRegion(slots * SIZEOF_MMSGHDR);
    this.due = new Float64Array(slots);
    this.len = new Int32Array(slots);
    for (let i = 0; i < slots; i++) {
      const addr = this.data.address + i * SLOT_BYTES;
      this.#rxIov.setPointer(i * SIZEOF_IOVEC, addr);
      this.#rxIov.setSize(i * SIZEOF_IOVEC + 8, SLOT_BYTES);
      this.txIov.setPointer(i * SIZEOF_IOVEC, addr);
      this.txIov.setSize(i * SIZEOF_IOVEC + 8, 0);
      for (const [vec, iov] of [
        [this.rxVec, this.#rxIov],
        [this.txVec, this.txIov],
      ] as const) {
        const b = i * SIZEOF_MMSGHDR;
        vec.setPointer(b + MMSG.name, 0);
        vec.setPointer(b + MMSG.iov, iov.address + i * SIZEOF_IOVEC);
        vec.setSize(b + MMSG.iovlen, 1);
        vec.setPointer(b + MMSG.control, 0);
      }
    }
  }
}

class Direction {
  readonly ring: Ring;
  readonly c: Float64Array;
  /** Where a frame that finds the ring full is read to (and dropped), so the socket never stays readable. */
  readonly scratch: Ring;

  constructor(
    readonly model: WanLane,
    readonly ingress: PacketSocket,
    readonly egress: PacketSocket,
    counters: SharedArrayBuffer,
    index: number,
    slots: number,
    scratch: Ring,
  ) {
    this.ring = new Ring(slots);
    this.c = new Float64Array(counters, index * LANE_FIELDS * 8, LANE_FIELDS);
    this.c[C.holdMinMs] = HOLD_NONE;
    this.scratch = scratch;
  }
}

export class IpWanEngine {
  readonly #data: IpWanWorkerData;
  readonly #control: Int32Array;
  readonly #waker: Waker;
  readonly #poller = new Poller();
  readonly #sockets: PacketSocket[] = [];
  readonly #dirs: Direction[] = [];
  #retryAt = Infinity;

  constructor(data: IpWanWorkerData) {
    this.#data = data;
    this.#control = new Int32Array(data.control);
    this.#waker = new Waker(data.wakeFd);
    try {
      const a = PacketSocket.open(data.aIf);
      this.#sockets.push(a);
      const b = PacketSocket.open(data.bIf);
      this.#sockets.push(b);
      const scratch = new Ring(BATCH);
      // Seeds differ per direction so the two loss sequences are independent.
      this.#dirs.push(new Direction(new WanLane(data.aToB, data.seed), a, b, data.counters, 0, data.slots, scratch));
      this.#dirs.push(new Direction(new WanLane(data.bToA, data.seed ^ 0x5bd1e995), b, a, data.counters, 1, data.slots, scratch));
    } catch (err) {
      this.close();
      throw err;
    }
    this.#poller.set([this.#sockets[0]!.fd, this.#sockets[1]!.fd, this.#waker.fd]);
    const c = libc();
    c.prctl(PR_SET_TIMERSLACK, 1);
    this.scheduling = 'normal';
    // A release time is only as good as the wake-up: on a loaded 2-core
    // host a normal thread waits behind the very TCP endpoints it shapes
    // (measured: ~10 % of frames > 1 ms late, up to 9 ms). A real-time
    // thread preempts them on wake. It never spins (it sleeps in ppoll
    // until the next due frame), and the kernel's RT throttling bounds it
    // anyway. Best effort: without the privilege, fall back to nice.
    if (data.rtPriority > 0 && c.sched_setscheduler(c.gettid(), SCHED_FIFO, new Int32Array([data.rtPriority])) === 0) {
      this.scheduling = `SCHED_FIFO ${data.rtPriority}`;
    } else if (data.nice !== 0 && c.setpriority(PRIO_PROCESS, c.gettid(), data.nice) === 0) {
      this.scheduling = `nice ${data.nice}`;
    }
  }

  /** How the forwarding thread is scheduled (reported by the runner). */
  readonly scheduling: string;

  run(): void {
    let nextStats = performance.now() + STATS_EVERY_MS;
    while (Atomics.load(this.#control, 0) === 0) {
      let now = performance.now();
      for (const d of this.#dirs) this.#sendDue(d, now);
      if (now >= nextStats) {
        this.#takeKernelStats();
        nextStats = now + STATS_EVERY_MS;
      }
      let next = Math.min(this.#retryAt, nextStats);
      for (const d of this.#dirs) if (d.ring.count > 0) next = Math.min(next, d.ring.due[d.ring.head]!);
      now = performance.now();
      const waitNs = Math.min(MAX_WAIT_NS, Math.max(0, Math.ceil((next - now) * 1e6)));
      if (this.#poller.wait(waitNs) > 0) {
        for (let i = 0; i < 2; i++) if (this.#poller.revents(i) & POLLIN) this.#receive(this.#dirs[i]!);
        if (this.#poller.revents(2) & POLLIN) this.#waker.drain();
      }
    }
    this.#takeKernelStats();
  }

  close(): void {
    for (const s of this.#sockets) s.close();
  }

  #receive(d: Direction): void {
    const c = libc();
    const ring = d.ring;
    const cnt = d.c;
    // Bounded rounds: the other direction's due frames must not wait behind a flood.
    for (let round = 0; round < 8; round++) {
      const room = Math.min(ring.slots - ring.count, ring.slots - ring.tail, BATCH);
      const into = room > 0 ? ring : d.scratch;
      const start = room > 0 ? ring.tail : 0;
      const n = room > 0 ? room : BATCH;
      const r = c.recvmmsg(d.ingress.fd, into.rxVec.address + start * SIZEOF_MMSGHDR, n, MSG_DONTWAIT | MSG_TRUNC, 0);
      if (r < 0) {
        const e = c.errno();
        if (e === EAGAIN) return;
        throw syscallError('recvmmsg(AF_PACKET)', e, d.ingress.ifname);
      }
      if (r === 0) return;
      const now = performance.now();
      cnt[C.rxFrames]! += r;
      if (room === 0) {
        cnt[C.dropFull]! += r;
        if (r < n) return;
        continue;
      }
      const bytes = ring.bytes;
      const u32 = ring.rxVec.u32;
      let w = start;
      for (let j = 0; j < r; j++) {
        const s = start + j;
        const total = u32[(s * SIZEOF_MMSGHDR + MMSG.len) >>> 2]!;
        const frame = total - VNET;
        if (total > SLOT_BYTES || frame < ETH_HEADER) {
          cnt[C.oversize]!++;
          continue;
        }
        const base = s * SLOT_BYTES;
        if (bytes[base + 1] !== 0) cnt[C.gso]!++;
        const ethertype = (bytes[base + VNET + 12]! << 8) | bytes[base + VNET + 13]!;
        const ip = frame - ETH_HEADER;
        cnt[C.rxBytes]! += ip;
        if (ip > cnt[C.maxIpBytes]!) cnt[C.maxIpBytes] = ip;
        if (ethertype !== ETHERTYPE_IPV4 && ethertype !== ETHERTYPE_IPV6) cnt[C.nonIp]!++;
        const due = d.model.admit(now, ip, ethertype === ETHERTYPE_ARP);
        if (due < 0) {
          cnt[due === DROP_QUEUE ? C.dropQueue : due === DROP_BURST ? C.dropBurst : C.dropLoss]!++;
          continue;
        }
        const hold = due - now;
        if (hold < cnt[C.holdMinMs]!) cnt[C.holdMinMs] = hold;
        if (hold > cnt[C.holdMaxMs]!) cnt[C.holdMaxMs] = hold;
        if (w !== s) bytes.copyWithin(w * SLOT_BYTES, base, base + total);
        ring.txIov.setSize(w * SIZEOF_IOVEC + 8, total);
        ring.len[w] = total;
        ring.due[w] = due;
        w++;
      }
      ring.count += w - start;
      ring.tail = w === ring.slots ? 0 : w;
      cnt[C.held] = ring.count;
      cnt[C.queuedBytes] = d.model.queuedBytes(now);
      if (r < n) return;
    }
  }

  #sendDue(d: Direction, now: number): void {
    const c = libc();
    const ring = d.ring;
    const cnt = d.c;
    while (ring.count > 0) {
      const limit = Math.min(ring.count, ring.slots - ring.head, BATCH);
      let k = 0;
      while (k < limit && ring.due[ring.head + k]! <= now) k++;
      if (k === 0) return;
      // Stamped before the call: sendmmsg on a veth runs the far side's
      // receive path (and whatever it forwards to) inside the call, which is
      // not the emulator's lateness.
      const t = performance.now();
      const r = c.sendmmsg(d.egress.fd, ring.txVec.address + ring.head * SIZEOF_MMSGHDR, k, MSG_DONTWAIT);
      let sent = r;
      if (r <= 0) {
        const e = r === 0 ? EAGAIN : c.errno();
        if (e === EAGAIN || e === ENOBUFS) {
          cnt[C.sendRetries]!++;
          this.#retryAt = performance.now() + RETRY_NS / 1e6;
          return;
        }
        // Anything else is this frame's problem (e.g. EMSGSIZE): drop it, keep the link going.
        cnt[C.sendErrors]!++;
        sent = 1;
      } else {
        this.#retryAt = Infinity;
        for (let i = 0; i < r; i++) {
          const slot = ring.head + i;
          const late = t - ring.due[slot]!;
          cnt[C.txBytes]! += ring.len[slot]! - VNET - ETH_HEADER;
          cnt[C.latenessSumMs]! += late;
          if (late > cnt[C.latenessMaxMs]!) cnt[C.latenessMaxMs] = late;
          let b = 0;
          while (b < LATENESS_EDGES_MS.length && late > LATENESS_EDGES_MS[b]!) b++;
          cnt[C.latenessHist + b]!++;
        }
        cnt[C.txFrames]! += r;
      }
      ring.head = (ring.head + sent) % ring.slots;
      ring.count -= sent;
      cnt[C.held] = ring.count;
      if (sent < k) return;
    }
  }

  #takeKernelStats(): void {
    for (const d of this.#dirs) d.c[C.kernelDrops]! += d.ingress.takeStatistics().drops;
  }
}
