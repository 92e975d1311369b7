/**
 * The batched datagram port (see port.ts for the contract).
 *
 * Send, on the application thread: send() copies the datagram into a
 * native staging region and notes its destination; a microtask (or
 * flush(), or a full stage) turns everything noted during the task into
 * one sendmmsg vector. Datagrams are staged back to back, so a run of
 * consecutive datagrams to one destination whose sizes are equal (the last
 * may be shorter) is one contiguous range: one iovec, one UDP GSO message
 * the kernel cuts into datagrams. The call is non-blocking; a full socket
 * buffer drops what is left (counted) rather than waiting, because the
 * caller is the data mover's event loop and UDP loss is its business.
 *
 * Sending here rather than in the receive thread: one FFI call per flush
 * on this thread, against a postMessage plus an eventfd write (another
 * syscall) plus a thread wake-up per flush to hand the work over.
 *
 * Receive, in a worker thread (batched-port-worker.ts): Node cannot watch a
 * descriptor it did not open, so the thread blocks in ppoll and posts one
 * 'batch' notification per recvmmsg batch over its src/worker channel;
 * 'message' listeners get views into it.
 */
import { EventEmitter } from 'node:events';
import { EngineError, SluiceError, type EngineFailedError } from '../../errors.js';
import { RawUdpSocket } from '../../sys/udp-socket.js';
import { Waker } from '../../sys/poller.js';
import { NativeRegion } from '../../sys/memory.js';
import { SendVector } from '../../sys/send-vector.js';
import { writeSockaddr } from '../../sys/sockaddr.js';
import { EAGAIN, ENOBUFS, errnoName } from '../../sys/errno.js';
import { GSO_MAX_SEGMENT, sendAll, type BatchSendPolicy } from '../../sys/batch-send.js';
import { SOCKADDR_SPACE, SOL_SOCKET, SOL_UDP, SO_MARK, UDP_GRO, UIO_MAXIOV } from '../../sys/constants.js';
import { MAX_UDP_PAYLOAD } from '../../wire/udp.js';
import type { BatchedIoProbe } from '../../sys/probe.js';
import { WorkerChannel } from '../../worker/channel.js';
import { workerEntry } from '../../worker/spawn.js';
import { handOver, newPortStats, reportPortError, type DatagramPort, type DatagramTarget, type OpenDatagramPortOptions } from './port.js';
import { SourceTable, type PortBatch, type PortNotifications, type PortRequests, type PortWorkerData } from './batched-port-protocol.js';

/** Bytes staged before a flush is forced (address space; touched only as far as used). */
const STAGE_BYTES = 4 << 20;
/** Datagrams staged before a flush is forced: sendmmsg takes at most UIO_MAXIOV messages. */
const STAGE_DATAGRAMS = UIO_MAXIOV;
/** Destinations whose sockaddr is kept encoded; past this the table restarts. */
const MAX_DESTINATIONS = 64;
/** Messages per recvmmsg in the receive thread (each with a 64 KiB slot). */
const RECEIVE_BATCH = 64;
/** The receive thread, as errors name it. */
const RECEIVE_THREAD = 'batched port receive thread';

type ReceiveChannel = WorkerChannel<PortRequests, PortNotifications>;

export class BatchedDatagramPort extends EventEmitter implements DatagramPort {
  readonly kind = 'batched' as const;
  readonly fallbackReason = undefined;
  /** send() copies into the stage at once. */
  readonly copiesOnSend = true;
  readonly stats = newPortStats();
  readonly #socket: RawUdpSocket;
  readonly #local: { address: string; port: number; family: 'IPv4' | 'IPv6' };
  readonly #channel: ReceiveChannel;
  readonly #waker: Waker;
  readonly #stop: Int32Array;
  /** Segments per GSO message (1: no GSO). */
  #gsoLimit: number;
  readonly #gsoMaxSegment: number;

  // Staged datagrams: offset and length in #stage, destination index.
  readonly #stage = new NativeRegion(STAGE_BYTES);
  #stageUsed = 0;
  #staged = 0;
  readonly #offset = new Int32Array(STAGE_DATAGRAMS);
  readonly #length = new Int32Array(STAGE_DATAGRAMS);
  readonly #dest = new Int32Array(STAGE_DATAGRAMS);
  #flushQueued = false;
  readonly #flushTask = () => {
    this.#flushQueued = false;
    this.flush();
  };

  // Destinations: encoded sockaddrs by "address|port".
  readonly #names = new NativeRegion(MAX_DESTINATIONS * SOCKADDR_SPACE);
  readonly #nameLength = new Int32Array(MAX_DESTINATIONS);
  readonly #destIndex = new Map<string, number>();
  #lastTo: DatagramTarget | undefined;
  #lastAddress = '';
  #lastPort = -1;
  #lastDest = -1;

  // One message per run: its first staged datagram and how many it carries.
  readonly #vec = new SendVector(STAGE_DATAGRAMS, STAGE_DATAGRAMS);
  readonly #msgFirst = new Int32Array(STAGE_DATAGRAMS);
  readonly #msgCount = new Int32Array(STAGE_DATAGRAMS);
  /** For resending a refused GSO message's datagrams one by one. */
  readonly #single = new SendVector(1, 1);
  /** How flush() treats what the kernel refuses (sys/batch-send.ts runs the loop). */
  readonly #sendPolicy: BatchSendPolicy = {
    onCall: () => this.stats.sendCalls++,
    onSent: (at, count) => {
      for (let m = at; m < at + count; m++) this.#count(m);
    },
    // The socket buffer is full: what is left would fail the same way now.
    onFull: () => 'drop-rest',
    onGsoRefused: (at) => {
      if (this.#msgCount[at]! <= 1) return false;
      // The path cannot take this GSO message (e.g. a segment above its MTU): no GSO from now on.
      this.#gsoLimit = 1;
      this.#sendSingly(at);
      return true;
    },
    onRefused: (at, errno, why) => {
      const st = this.stats;
      if (why === 'full') st.dropped.queueFull += this.#msgCount[at]!;
      else st.dropped.sendError += this.#msgCount[at]!;
      st.lastSendError = errnoName(errno);
    },
  };

  /** Sources by the receive thread's ids. */
  readonly #sources = new SourceTable();
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(socket: RawUdpSocket, channel: ReceiveChannel, waker: Waker, stop: Int32Array, probe: BatchedIoProbe) {
    super();
    this.#socket = socket;
    this.#channel = channel;
    this.#waker = waker;
    this.#stop = stop;
    this.#gsoLimit = probe.gso ? Math.min(probe.gsoMaxSegments, 128) : 1;
    this.#gsoMaxSegment = GSO_MAX_SEGMENT[socket.family];
    const ep = socket.localEndpoint();
    this.#local = { address: ep.address, port: ep.port, family: ep.family === 4 ? 'IPv4' : 'IPv6' };
    channel.on('batch', (m) => this.#deliver(m));
    // The thread ends only when told to (close); any other end means nothing is received any more.
    channel.on('failed', (e) => this.#fault(receiveThreadError(e, channel.exitCode)));
  }

  /** Opens, binds and starts the receive thread; on failure leaves nothing open. */
  static async open(options: OpenDatagramPortOptions, probe: BatchedIoProbe): Promise<BatchedDatagramPort> {
    const family = options.family ?? 4;
    const socket = RawUdpSocket.open(family);
    let waker: Waker | undefined;
    try {
      if (options.socketBufferBytes) socket.setBuffers(options.socketBufferBytes);
      if (options.mark) socket.setInt(SOL_SOCKET, SO_MARK, options.mark, 'setsockopt(SO_MARK)');
      socket.bind({ family, address: options.bind.address, port: options.bind.port });
      let gro = false;
      if (probe.gro) {
        try {
          socket.setInt(SOL_UDP, UDP_GRO, 1, 'setsockopt(UDP_GRO)');
          gro = true;
        } catch {
          // The probe said yes; a refusal here only costs the coalescing.
        }
      }
      const w = (waker = new Waker());
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const channel = await WorkerChannel.start<PortRequests, PortNotifications, undefined, PortWorkerData>({
        spawn: {
          entry: workerEntry(import.meta.url, './batched-port-worker'),
          name: 'sluice-tpo-port',
          workerData: { fd: socket.fd, wakeFd: w.fd, stop, batch: RECEIVE_BATCH, gro },
        },
        engine: RECEIVE_THREAD,
        errorContext: RECEIVE_THREAD,
        wake: () => w.signal(),
      });
      return new BatchedDatagramPort(socket, channel, w, stop, probe);
    } catch (e) {
      // start() left no thread behind.
      waker?.close();
      socket.close();
      throw e;
    }
  }

  address(): { address: string; port: number; family: 'IPv4' | 'IPv6' } {
    return { ...this.#local };
  }

  send(datagram: Uint8Array, to: DatagramTarget): void {
    if (this.#closed) {
      this.stats.dropped.closed++;
      return;
    }
    const len = datagram.length;
    if (len > MAX_UDP_PAYLOAD) {
      // What dgram reports as EMSGSIZE: a caller's bug, but a lost datagram to the network.
      this.stats.dropped.sendError++;
      this.stats.lastSendError = 'EMSGSIZE';
      return;
    }
    if (this.#staged === STAGE_DATAGRAMS || this.#stageUsed + len > STAGE_BYTES) this.flush();
    // The data mover sends to one peer object again and again: skip the key string then.
    const last = this.#lastTo;
    const dest = to === last && to.port === this.#lastPort && to.address === this.#lastAddress ? this.#lastDest : this.#destinationOf(to);
    const i = this.#staged++;
    this.#offset[i] = this.#stageUsed;
    this.#length[i] = len;
    this.#dest[i] = dest;
    this.#stage.bytes.set(datagram, this.#stageUsed);
    this.#stageUsed += len;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushTask);
    }
  }

  /** Sends everything staged: one sendmmsg (more only after a partial send or an error; a full socket drops the rest). */
  flush(): void {
    const n = this.#staged;
    if (n === 0) return;
    const vec = this.#vec;
    vec.clear();
    const len = this.#length;
    const dst = this.#dest;
    const gsoLimit = this.#gsoLimit;
    const maxSeg = this.#gsoMaxSegment;
    let messages = 0;
    for (let a = 0; a < n;) {
      const s = len[a]!;
      const d = dst[a]!;
      let b = a + 1;
      let total = s;
      if (gsoLimit > 1 && s > 0 && s <= maxSeg) {
        while (b < n && b - a < gsoLimit && dst[b] === d) {
          const l = len[b]!;
          if (l > s || l === 0 || total + l > MAX_UDP_PAYLOAD) break;
          total += l;
          b++;
          if (l < s) break; // only a run's last segment may be shorter
        }
      }
      const run = b - a;
      vec.begin(this.#names.address + d * SOCKADDR_SPACE, this.#nameLength[d]!, run > 1 ? s : 0);
      // Staged back to back: the run is one contiguous range.
      vec.addIov(this.#stage.address + this.#offset[a]!, total);
      this.#msgFirst[messages] = a;
      this.#msgCount[messages] = run;
      messages++;
      a = b;
    }
    sendAll(vec, this.#socket.fd, this.#sendPolicy, messages);
    this.#staged = 0;
    this.#stageUsed = 0;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.flush();
      this.#closed = true;
      await this.#channel.close({ stopFlag: this.#stop });
      // Only now: the thread may have been inside recvmmsg on this descriptor.
      this.#waker.close();
      this.#socket.close();
    })();
    return this.#closing;
  }

  #count(m: number): void {
    const first = this.#msgFirst[m]!;
    const count = this.#msgCount[m]!;
    const st = this.stats;
    st.datagramsSent += count;
    for (let i = first; i < first + count; i++) st.bytesSent += this.#length[i]!;
    if (count > 1) {
      st.gsoMessages++;
      st.gsoSegments += count;
    }
  }

  #sendSingly(m: number): void {
    const first = this.#msgFirst[m]!;
    const count = this.#msgCount[m]!;
    const st = this.stats;
    const fd = this.#socket.fd;
    for (let i = first; i < first + count; i++) {
      const d = this.#dest[i]!;
      this.#single.clear();
      this.#single.begin(this.#names.address + d * SOCKADDR_SPACE, this.#nameLength[d]!, 0);
      this.#single.addIov(this.#stage.address + this.#offset[i]!, this.#length[i]!);
      const r = this.#single.send(fd, 0);
      st.sendCalls++;
      if (r > 0) {
        st.datagramsSent++;
        st.bytesSent += this.#length[i]!;
      } else {
        const errno = -r;
        if (errno === EAGAIN || errno === ENOBUFS) st.dropped.queueFull++;
        else st.dropped.sendError++;
        st.lastSendError = errnoName(errno);
      }
    }
  }

  #destinationOf(to: DatagramTarget): number {
    const key = `${to.address}|${to.port}`;
    let d = this.#destIndex.get(key);
    if (d === undefined) {
      if (this.#destIndex.size >= MAX_DESTINATIONS) {
        // Staged datagrams point at the old sockaddrs: send them before reusing the slots.
        this.flush();
        this.#destIndex.clear();
      }
      d = this.#destIndex.size;
      this.#nameLength[d] = writeSockaddr(this.#names.bytes, d * SOCKADDR_SPACE, this.#socket.family, to.address, to.port);
      this.#destIndex.set(key, d);
    }
    this.#lastTo = to;
    this.#lastAddress = to.address;
    this.#lastPort = to.port;
    this.#lastDest = d;
    return d;
  }

  #deliver(m: PortBatch): void {
    if (this.#closed) return;
    this.#sources.apply(m);
    const st = this.stats;
    st.receiveBatches++;
    st.groBuffers += m.groBuffers;
    st.receiveDropped.truncated += m.truncated;
    st.receiveDropped.unknownSource += m.unknownSources;
    const all = Buffer.from(m.data);
    // The receive thread's clock is the same epoch clock as this one's; only the origins differ.
    const receivedAt = m.receivedAtEpochMs - performance.timeOrigin;
    const pairs = m.pairs;
    let at = 0;
    for (let k = 0; k < pairs.length; k += 2) {
      const len = pairs[k]!;
      const msg = all.subarray(at, at + len);
      at += len;
      st.datagramsReceived++;
      st.bytesReceived += len;
      const from = this.#sources.get(pairs[k + 1]!);
      if (!from) {
        // Cannot happen while both tables agree; if they ever do not, the datagram is dropped, never misattributed.
        st.receiveDropped.unknownSource++;
        continue;
      }
      handOver(this, msg, from, receivedAt);
      // A listener may close the port: the rest of the batch is then dropped, as a closed socket would.
      if (this.#closed) return;
    }
  }

  #fault(e: Error): void {
    if (this.#closed) return;
    reportPortError(this, e);
  }
}

/**
 * What the port reports when its receive thread stopped on its own: the
 * thread's own error (a SyscallError, or 'batched port receive thread:
 * …'), an uncaught one, or its exit.
 */
function receiveThreadError(e: EngineFailedError, exitCode: number | undefined): SluiceError {
  const cause = e.cause;
  if (cause instanceof SluiceError) return cause;
  if (cause instanceof Error) return new EngineError(RECEIVE_THREAD, `${RECEIVE_THREAD} failed: ${cause.message}`, { cause });
  return new EngineError(RECEIVE_THREAD, `${RECEIVE_THREAD} exited (code ${exitCode}): the port receives nothing more`);
}
