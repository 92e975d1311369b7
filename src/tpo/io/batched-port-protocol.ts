/**
 * Messages between the batched datagram port (batched-port.ts) and its
 * receive thread (batched-port-worker.ts), over a src/worker channel: the
 * thread takes no requests and posts one 'batch' notification per recvmmsg
 * batch. Structured-clone data; the stop flag is shared memory so the
 * thread can check it without a message.
 *
 * Sources travel as small ids: the thread gives each new source address an
 * id and sends the address once, in the batch that first uses it; the
 * application thread keeps the same table. The tables are bounded, so the
 * thread restarts its table when a batch could overflow it, and only then:
 * before the batch's first datagram, never inside a batch, so every id
 * written into a batch is one the application knows once it has applied
 * that batch (SourceIdTable on the thread, SourceTable on the application
 * side). The application side still refuses an id it does not know (a
 * counted drop), so no mistake here can hand a listener an undefined source.
 */
import { AF_INET, AF_INET6 } from '../../sys/constants.js';
import { readSockaddr } from '../../sys/sockaddr.js';
import type { DatagramSource } from './port.js';

/** Sources the tables remember; past this the thread's table restarts (between batches). */
export const MAX_SOURCES = 1024;

export interface PortWorkerData {
  /** The port's socket (owned and closed by the application thread). */
  readonly fd: number;
  /** eventfd the application signals to wake the thread (to stop it). */
  readonly wakeFd: number;
  /** Int32Array(1) on a SharedArrayBuffer: 1 = stop. */
  readonly stop: Int32Array;
  /** Messages per recvmmsg (and 64 KiB receive slots). */
  readonly batch: number;
  /** UDP_GRO is on: entries may be super-buffers to split. */
  readonly gro: boolean;
}

export interface SourceEntry {
  readonly id: number;
  readonly address: string;
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
}

export interface PortBatch {
  /** The datagrams back to back. */
  readonly data: ArrayBuffer;
  /** Per datagram: its length and its source id. */
  readonly pairs: Int32Array;
  readonly groBuffers: number;
  /** Datagrams longer than a receive slot (cannot happen with 64 KiB slots; counted, not delivered). */
  readonly truncated: number;
  /** Datagrams whose source address the thread could not read (not IPv4 or IPv6): counted, not delivered. */
  readonly unknownSources: number;
  /** When recvmmsg returned this batch: performance.timeOrigin + performance.now() in the receive thread. */
  readonly receivedAtEpochMs: number;
  /** Sources first seen in this batch. */
  sources?: SourceEntry[];
  /** The thread restarted its source table: forget earlier ids before reading `sources`. */
  reset?: boolean;
}

/** The receive thread takes no requests: the stop flag and the eventfd end it. */
export type PortRequests = Record<never, never>;

export interface PortNotifications {
  /** One recvmmsg batch; its buffers are transferred. */
  batch: PortBatch;
}

/**
 * The receive thread's source ids. Per batch: beginBatch(entries) (which
 * may restart the table, so that the batch cannot overflow it), idOf() for
 * each entry, finish(batch) to attach the new sources and the restart.
 */
export class SourceIdTable {
  /** Id by key: IPv4 as ip * 65536 + port (a number), IPv6 as a string of the port and address bytes. */
  readonly #ids = new Map<number | string, number>();
  #fresh: SourceEntry[] = [];
  #reset = false;

  constructor(readonly capacity = MAX_SOURCES) {}

  /** Before a batch of at most `entries` sources: restart the table now if they might not fit. */
  beginBatch(entries: number): void {
    if (entries > this.capacity) throw new RangeError(`a batch of ${entries} entries exceeds the source table (${this.capacity})`);
    if (this.#ids.size + entries > this.capacity) {
      this.#ids.clear();
      this.#fresh = [];
      this.#reset = true;
    }
  }

  /** The id of the source whose sockaddr (as recvmmsg wrote it) is at `meta[off]`; -1 when it is neither IPv4 nor IPv6. */
  idOf(meta: Uint8Array, off: number): number {
    const dv = new DataView(meta.buffer, meta.byteOffset + off, 28);
    const family = dv.getUint16(0, true);
    let key: number | string;
    if (family === AF_INET) key = dv.getUint32(4, false) * 65536 + dv.getUint16(2, false);
    else if (family === AF_INET6) key = Array.prototype.join.call(meta.subarray(off + 2, off + 24), ',');
    else return -1;
    let id = this.#ids.get(key);
    if (id !== undefined) return id;
    // beginBatch made room for every entry of the batch: no restart can happen here.
    id = this.#ids.size;
    this.#ids.set(key, id);
    const ep = readSockaddr(meta, off);
    this.#fresh.push({ id, address: ep.address, port: ep.port, family: ep.family === 4 ? 'IPv4' : 'IPv6' });
    return id;
  }

  /** Attaches what the application thread must learn before it reads the batch's ids. */
  finish(batch: PortBatch): void {
    if (this.#fresh.length) {
      batch.sources = this.#fresh;
      this.#fresh = [];
    }
    if (this.#reset) {
      batch.reset = true;
      this.#reset = false;
    }
  }
}

/** The application thread's copy of the source table. */
export class SourceTable {
  #sources: (DatagramSource | undefined)[] = [];

  /** Learns a batch's restart and new sources (before reading its pairs). */
  apply(batch: PortBatch): void {
    if (batch.reset) this.#sources = [];
    if (batch.sources) {
      for (const s of batch.sources) {
        if (Number.isInteger(s.id) && s.id >= 0 && s.id < MAX_SOURCES)
          this.#sources[s.id] = Object.freeze({ address: s.address, port: s.port, family: s.family });
      }
    }
  }

  /** The source with id `id`, or undefined when this side does not know it (the datagram is dropped and counted). */
  get(id: number): DatagramSource | undefined {
    return id >= 0 && id < MAX_SOURCES ? this.#sources[id] : undefined;
  }
}
