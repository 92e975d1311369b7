/**
 * One fan-out client in the fan-out thread: its socket (by descriptor; the
 * application thread owns it), its own pipe, and the chunks queued in it.
 *
 * A chunk goes into the pipe only whole. Free room is counted in pipe
 * slots, not bytes: a tee'd chunk occupies one slot per page it spans and
 * a pipe holds size/4096 slots, so "size minus FIONREAD" bytes free can
 * still be too few slots. The queue of chunk sizes gives the slots in use
 * (a partly sent chunk still counts all its pages: conservative). A chunk
 * that does not fit is skipped, whole, and counted; the client catches up
 * at the next chunk that fits. Nothing here blocks: the sockets and pipes
 * are non-blocking.
 */
import { SplicePipe, WOULD_BLOCK, splice, tee, writeSome } from '../../sys/splice.js';
import { PAGE } from './input.js';
import { SyscallError } from '../../errors.js';

export interface ClientStats {
  readonly id: number;
  readonly peer: string;
  readonly via: 'http' | 'tcp';
  readonly input: string;
  /** ms since the epoch. */
  readonly connectedSince: number;
  readonly bytesSent: number;
  readonly chunksSent: number;
  readonly skippedChunks: number;
  readonly skippedBytes: number;
  readonly skippedDatagrams: number;
  /** Bytes waiting in its pipe. */
  readonly queuedBytes: number;
}

export type Offer = 'queued' | 'skipped' | 'torn';

export class FanClient {
  readonly id: number;
  readonly fd: number;
  readonly peer: string;
  readonly via: 'http' | 'tcp';
  readonly input: string;
  readonly connectedSince = Date.now();
  readonly pipe: SplicePipe;
  readonly #slots: number;
  /** Chunk lengths and pages in the pipe, oldest first, from `#head`. */
  readonly #lens: number[] = [];
  readonly #pages: number[] = [];
  #head = 0;
  #headSent = 0;
  #usedPages = 0;
  queuedBytes = 0;
  bytesSent = 0;
  chunksSent = 0;
  skippedChunks = 0;
  skippedBytes = 0;
  skippedDatagrams = 0;
  /** performance.now() of the first chunk skipped since the last one queued (0: keeping up). */
  behindSince = 0;

  /** Throws SyscallError when no pipe, or none of at least `minPipeBytes` (pipe-max-size, pipe-user-pages-soft), can be had. */
  constructor(o: { id: number; fd: number; peer: string; via: 'http' | 'tcp'; input: string; pipeBytes: number; minPipeBytes: number }) {
    this.id = o.id;
    this.fd = o.fd;
    this.peer = o.peer;
    this.via = o.via;
    this.input = o.input;
    this.pipe = new SplicePipe(o.pipeBytes);
    if (this.pipe.size < o.minPipeBytes) {
      this.pipe.close();
      throw new SyscallError(
        'fcntl(F_SETPIPE_SZ)',
        'EPERM',
        `client pipe of ${this.pipe.size} bytes, ${o.minPipeBytes} needed (fs.pipe-max-size, fs.pipe-user-pages-soft)`,
      );
    }
    this.#slots = Math.floor(this.pipe.size / PAGE);
  }

  /** Writes a short header (the HTTP response) straight to the fresh socket; false if it did not go whole. */
  greet(bytes: Uint8Array): boolean {
    return bytes.byteLength === 0 || writeSome(this.fd, bytes, bytes.byteLength) === bytes.byteLength;
  }

  /** Tees the chunk at the head of `sourceFd` into this client's pipe if it fits whole, else counts it skipped. */
  offer(sourceFd: number, len: number, pages: number, datagrams: number, now: number): Offer {
    if (this.#slots - this.#usedPages >= pages) {
      const n = tee(sourceFd, this.pipe.writeFd, len);
      if (n === len) {
        this.#lens.push(len);
        this.#pages.push(pages);
        this.#usedPages += pages;
        this.queuedBytes += len;
        this.chunksSent++;
        this.behindSince = 0;
        return 'queued';
      }
      // Part of a chunk in the pipe would cut a datagram: the client cannot stay in step.
      if (n !== WOULD_BLOCK && n !== 0) return 'torn';
    }
    this.skippedChunks++;
    this.skippedBytes += len;
    this.skippedDatagrams += datagrams;
    if (this.behindSince === 0) this.behindSince = now;
    return 'skipped';
  }

  /** Splices what its pipe holds into the socket until the socket is full. Throws SyscallError (EPIPE, ECONNRESET). */
  flush(): void {
    while (this.queuedBytes > 0) {
      const n = splice(this.pipe.readFd, this.fd, this.queuedBytes);
      if (n === WOULD_BLOCK || n === 0) return;
      this.#sent(n);
    }
  }

  #sent(n: number): void {
    this.bytesSent += n;
    this.queuedBytes -= n;
    this.#headSent += n;
    while (this.#head < this.#lens.length && this.#headSent >= this.#lens[this.#head]!) {
      this.#headSent -= this.#lens[this.#head]!;
      this.#usedPages -= this.#pages[this.#head]!;
      this.#head++;
    }
    if (this.#head > 1024) {
      this.#lens.splice(0, this.#head);
      this.#pages.splice(0, this.#head);
      this.#head = 0;
    }
  }

  stats(): ClientStats {
    return {
      id: this.id,
      peer: this.peer,
      via: this.via,
      input: this.input,
      connectedSince: this.connectedSince,
      bytesSent: this.bytesSent,
      chunksSent: this.chunksSent,
      skippedChunks: this.skippedChunks,
      skippedBytes: this.skippedBytes,
      skippedDatagrams: this.skippedDatagrams,
      queuedBytes: this.queuedBytes,
    };
  }

  close(): void {
    this.pipe.close();
  }
}
