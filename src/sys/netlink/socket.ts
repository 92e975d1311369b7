/**
 * A request/acknowledge netlink socket (any protocol: NETLINK_NETFILTER for
 * nf_tables, NETLINK_ROUTE for rules and routes). `request()` writes a
 * buffer of messages in one write (an nf_tables batch must arrive as one
 * skb) and waits for an ACK of every sequence number that asked for one;
 * the first kernel-reported failure becomes a SyscallError naming what
 * that message was for and the errno.
 *
 * Every read is bounded by SO_RCVTIMEO and the number of reads, so a
 * silent kernel cannot hang a start or an exit handler.
 */
import { libc } from '../ffi.js';
import { EAGAIN, EINTR, syscallError } from '../errno.js';
import { AF_NETLINK, MSG_DONTWAIT, MSG_TRUNC, SOCK_CLOEXEC, SOCK_RAW, SOL_SOCKET, SO_RCVTIMEO } from '../constants.js';
import { parseAcks } from './message.js';

const RECV_BUFFER = 64 * 1024;
const RECV_TIMEOUT_S = 2;
const MAX_READS = 1024;

/** One request message we want acknowledged, and what it was for (for the error). */
export interface PendingAck {
  readonly seq: number;
  /** E.g. "NFT_MSG_NEWRULE sluice_tpo_a/pre_tcp #2"; becomes SyscallError.op. */
  readonly what: string;
}

export class NetlinkSocket {
  #fd: number;
  #seq: number;
  readonly #buf = new Uint8Array(RECV_BUFFER);

  private constructor(fd: number) {
    this.#fd = fd;
    // Distinct from any other socket's numbers; only used to match replies.
    this.#seq = Date.now() & 0x3fffffff || 1;
  }

  /** socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol) with a receive timeout. */
  static open(protocol: number, name: string): NetlinkSocket {
    const c = libc();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw syscallError(`socket(AF_NETLINK, ${name})`, c.errno());
    if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new BigInt64Array([BigInt(RECV_TIMEOUT_S), 0n]), 16) < 0) {
      const e = c.errno();
      c.close(fd);
      throw syscallError('setsockopt(SO_RCVTIMEO)', e);
    }
    return new NetlinkSocket(fd);
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** A fresh sequence number for the next message. */
  nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0 || 1;
    return this.#seq;
  }

  /**
   * Sends `bytes` (one or more messages) and waits until every `pending`
   * seq is acknowledged. Throws the first failure as SyscallError(what, errno).
   * Stale replies (of an earlier request that failed part-way) are
   * discarded first so they cannot be mistaken for this request's.
   */
  request(bytes: Uint8Array, pending: readonly PendingAck[], op = 'netlink request'): void {
    const c = libc();
    if (this.#fd < 0) throw new Error(`${op}: netlink socket is closed`);
    this.#drain();
    const n = Number(c.write(this.#fd, bytes, bytes.byteLength));
    if (n !== bytes.byteLength) throw syscallError(`write(${op})`, n < 0 ? c.errno() : 0, n >= 0 ? `short write ${n} of ${bytes.byteLength}` : undefined);
    const waiting = new Map(pending.map((p) => [p.seq, p.what]));
    for (let reads = 0; reads < MAX_READS && waiting.size > 0; reads++) {
      const r = Number(c.recv(this.#fd, this.#buf, this.#buf.byteLength, MSG_TRUNC));
      if (r < 0) {
        const e = c.errno();
        if (e === EINTR) continue;
        throw syscallError(
          `recv(${op})`,
          e,
          e === EAGAIN ? `no acknowledgement within ${RECV_TIMEOUT_S} s for ${[...waiting.values()].join(', ')}` : undefined,
        );
      }
      if (r > this.#buf.byteLength) throw new Error(`${op}: reply of ${r} bytes exceeds the ${this.#buf.byteLength}-byte buffer`);
      const chunk = parseAcks(this.#buf.subarray(0, r));
      for (const s of chunk.acked) waiting.delete(s);
      if (chunk.error) {
        const what = waiting.get(chunk.error.seq) ?? `${op} (seq ${chunk.error.seq})`;
        throw syscallError(what, chunk.error.errno, 'reported by the kernel');
      }
      if (chunk.malformed) throw new Error(`${op}: malformed reply: ${chunk.malformed}`);
    }
    if (waiting.size > 0) throw new Error(`${op}: no acknowledgement after ${MAX_READS} reads for ${[...waiting.values()].join(', ')}`);
  }

  /** Reads and drops whatever is queued, without blocking (bounded). */
  #drain(): void {
    const c = libc();
    for (let i = 0; i < MAX_READS; i++) {
      if (Number(c.recv(this.#fd, this.#buf, this.#buf.byteLength, MSG_DONTWAIT)) <= 0) return;
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }
}
