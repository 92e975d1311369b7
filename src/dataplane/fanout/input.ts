/**
 * One live input of the fan-out thread: a UDP socket bound to the input's
 * address (a group is joined, as the tiers join theirs), datagrams read
 * whole into a chunk buffer, and the source pipe the chunk is written to
 * once and tee'd from. For `rtp` inputs each datagram's RTP header (fixed
 * part, CSRCs, extension, padding) is stripped so clients get the payload
 * (TS packets), as udpxy's /rtp/ does.
 *
 * A chunk is whole datagrams only, so every client's stream is a run of
 * whole datagrams (whole 188-byte TS packets for TS over UDP/RTP).
 */
import { RawUdpSocket } from '../../sys/udp-socket.js';
import { SplicePipe, WOULD_BLOCK, readSome, writeSome } from '../../sys/splice.js';
import { interfaceIndex, joinGroup, setMulticastAll } from '../../sys/multicast.js';
import { SOL_SOCKET } from '../../sys/constants.js';
import { SyscallError } from '../../errors.js';
import type { FanoutInput } from './config.js';

const SO_REUSEADDR = 2;
/** The largest datagram read whole. */
export const MAX_DATAGRAM = 65536;
export const PAGE = 4096;

export interface InputStats {
  readonly key: string;
  readonly clients: number;
  readonly datagrams: number;
  readonly bytes: number;
  readonly chunks: number;
  /** RTP datagrams without a valid header (not forwarded). */
  readonly badRtp: number;
}

export class LiveInput {
  readonly spec: FanoutInput;
  readonly socket: RawUdpSocket;
  readonly source: SplicePipe;
  readonly chunk: Uint8Array;
  readonly #chunkBytes: number;
  fill = 0;
  /** Datagrams in the current chunk, and when its first arrived (performance.now()). */
  count = 0;
  firstAt = 0;
  datagrams = 0;
  bytes = 0;
  chunks = 0;
  badRtp = 0;

  /** Opens, binds and joins; throws SyscallError naming the failed call. */
  constructor(spec: FanoutInput, o: { chunkBytes: number; interface?: string | undefined; receiveBuffer: number }) {
    this.spec = spec;
    this.#chunkBytes = o.chunkBytes;
    this.chunk = new Uint8Array(o.chunkBytes + MAX_DATAGRAM);
    const s = RawUdpSocket.open(spec.endpoint.family);
    let pipe: SplicePipe | undefined;
    try {
      s.setInt(SOL_SOCKET, SO_REUSEADDR, 1, 'setsockopt(SO_REUSEADDR)');
      try {
        s.setBuffers(o.receiveBuffer);
      } catch {
        /* the default buffer still works */
      }
      s.bind(spec.endpoint);
      if (spec.multicast) {
        setMulticastAll(s.fd, s.family, false);
        joinGroup(s.fd, s.family, spec.endpoint.address, o.interface === undefined ? 0 : interfaceIndex(o.interface), []);
      }
      pipe = new SplicePipe(2 * this.chunk.byteLength);
      if (pipe.size < this.chunk.byteLength)
        throw new SyscallError('fcntl(F_SETPIPE_SZ)', 'EPERM', `source pipe ${pipe.size} bytes < ${this.chunk.byteLength}`);
    } catch (err) {
      pipe?.close();
      s.close();
      throw err;
    }
    this.socket = s;
    this.source = pipe;
  }

  /**
   * Reads datagrams until none is waiting or the chunk is full enough.
   * Returns true when the chunk should go out now (size reached).
   */
  receive(now: number): boolean {
    while (this.fill < this.#chunkBytes) {
      const view = this.chunk.subarray(this.fill, this.fill + MAX_DATAGRAM);
      const n = readSome(this.socket.fd, view);
      if (n === WOULD_BLOCK) return false;
      this.datagrams++;
      const kept = this.spec.proto === 'rtp' ? this.#stripRtp(view, n) : n;
      if (kept <= 0) continue;
      if (this.count === 0) this.firstAt = now;
      this.fill += kept;
      this.count++;
      this.bytes += kept;
    }
    return true;
  }

  /** Moves the RTP payload to the front of `view`; its length, or 0 for a datagram that is not RTP. */
  #stripRtp(view: Uint8Array, n: number): number {
    if (n < 12 || view[0]! >> 6 !== 2) {
      this.badRtp++;
      return 0;
    }
    let head = 12 + 4 * (view[0]! & 0x0f);
    if (view[0]! & 0x10) {
      if (n < head + 4) return this.#bad();
      head += 4 + 4 * ((view[head + 2]! << 8) | view[head + 3]!);
    }
    const pad = view[0]! & 0x20 ? view[n - 1]! : 0;
    const end = n - pad;
    if (end < head) return this.#bad();
    view.copyWithin(0, head, end);
    return end - head;
  }

  #bad(): number {
    this.badRtp++;
    return 0;
  }

  /** Writes the chunk into the (empty) source pipe; throws if it does not fit whole. */
  load(): void {
    const n = writeSome(this.source.writeFd, this.chunk, this.fill);
    if (n !== this.fill) throw new SyscallError('write', 'EAGAIN', `source pipe took ${n} of ${this.fill} bytes`);
    this.chunks++;
  }

  /** Starts the next chunk. */
  reset(): void {
    this.fill = 0;
    this.count = 0;
  }

  stats(clients: number): InputStats {
    return { key: this.spec.key, clients, datagrams: this.datagrams, bytes: this.bytes, chunks: this.chunks, badRtp: this.badRtp };
  }

  close(): void {
    this.source.close();
    this.socket.close();
  }
}

/** Pages a chunk of `len` bytes written into an empty pipe occupies: each is one pipe slot, here and in every pipe it is tee'd into. */
export function pagesOf(len: number): number {
  return Math.ceil(len / PAGE);
}
