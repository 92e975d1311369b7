/**
 * The one netlink socket (any protocol: NETLINK_NETFILTER for nf_tables,
 * NETLINK_ROUTE for rules, routes and qdiscs), and the one receive loop
 * every netlink user goes through:
 *
 * - `request()` writes a buffer of messages in one write (an nf_tables
 *   batch must arrive as one skb) and waits for an ACK of every sequence
 *   number that asked for one; the first kernel-reported failure becomes a
 *   SyscallError naming what that message was for and the errno.
 * - `dump()` writes one NLM_F_DUMP request and collects what each read
 *   holds until NLMSG_DONE; a kernel-reported failure becomes a
 *   SyscallError naming the request and the errno.
 *
 * Every read is bounded: by SO_RCVTIMEO (a silent kernel cannot hang a
 * start, a probe or an exit handler), by the number of reads, and by the
 * receive buffer (MSG_TRUNC reports a reply larger than it, which is
 * refused rather than half-parsed). Replies are parsed by ./message.ts,
 * which refuses a lying nlmsg_len instead of looping or reading past it.
 */
import { libc } from '../ffi.js';
import { EAGAIN, EINTR, syscallError } from '../errno.js';
import { AF_NETLINK, MSG_DONTWAIT, MSG_TRUNC, SOCK_CLOEXEC, SOCK_RAW, SOL_SOCKET, SO_RCVTIMEO } from '../constants.js';
import { parseAcks, type DumpItems } from './message.js';

/** Bigger than any skb the kernel builds for us (it caps dump skbs near 32 KiB). */
const RECV_BUFFER = 64 * 1024;
const RECV_TIMEOUT_S = 2;
/** Bounds the wait for ACKs even if the kernel keeps sending something else. */
const MAX_ACK_READS = 1024;
/** Bounds a dump even if the kernel never sent NLMSG_DONE (a dump may take many reads). */
const MAX_DUMP_READS = 4096;

/** One request message we want acknowledged, and what it was for (for the error). */
export interface PendingAck {
  readonly seq: number;
  /** E.g. "NFT_MSG_NEWRULE sluice_tpo_a/pre_tcp #2"; becomes SyscallError.op. */
  readonly what: string;
}

/** Parses one read of a dump reply, keeping the messages of `seq` (see parseDump in ./message.ts). */
export type DumpParser<T> = (bytes: Uint8Array, seq: number) => DumpItems<T>;

export class NetlinkSocket {
  #fd: number;
  #seq: number;
  readonly #buf = new Uint8Array(RECV_BUFFER);

  private constructor(fd: number) {
    this.#fd = fd;
    // Distinct from any other socket's numbers; only used to match replies.
    this.#seq = Date.now() & 0x3fffffff || 1;
  }

  /**
   * socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol) with a receive
   * timeout. `name` (e.g. 'NETLINK_ROUTE') goes into the error of a failed
   * socket() call.
   */
  static open(protocol: number, name?: string): NetlinkSocket {
    const c = libc();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw syscallError(name === undefined ? 'socket(AF_NETLINK)' : `socket(AF_NETLINK, ${name})`, c.errno());
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
    this.#send(bytes, op);
    const waiting = new Map(pending.map((p) => [p.seq, p.what]));
    for (let reads = 0; reads < MAX_ACK_READS && waiting.size > 0; reads++) {
      const r = this.#recv(op, () => `no acknowledgement within ${RECV_TIMEOUT_S} s for ${[...waiting.values()].join(', ')}`);
      if (r === undefined) continue;
      if (r > this.#buf.byteLength) throw new Error(`${op}: reply of ${r} bytes exceeds the ${this.#buf.byteLength}-byte buffer`);
      const chunk = parseAcks(this.#buf.subarray(0, r));
      for (const s of chunk.acked) waiting.delete(s);
      if (chunk.error) {
        const what = waiting.get(chunk.error.seq) ?? `${op} (seq ${chunk.error.seq})`;
        throw syscallError(what, chunk.error.errno, 'reported by the kernel');
      }
      if (chunk.malformed) throw new Error(`${op}: malformed reply: ${chunk.malformed}`);
    }
    if (waiting.size > 0) throw new Error(`${op}: no acknowledgement after ${MAX_ACK_READS} reads for ${[...waiting.values()].join(', ')}`);
  }

  /**
   * Sends `request`, a dump request (NLM_F_DUMP) carrying `seq`, and
   * returns every item `parse` finds in the replies up to NLMSG_DONE.
   * Throws SyscallError (write, recv, or `op` for a kernel-reported error)
   * naming the call and errno, or an Error for a malformed or endless reply.
   */
  dump<T>(request: Uint8Array, seq: number, op: string, parse: DumpParser<T>): T[] {
    this.#send(request, op);
    const items: T[] = [];
    for (let reads = 0; reads < MAX_DUMP_READS; reads++) {
      const n = this.#recv(op, () => `no NLMSG_DONE within ${RECV_TIMEOUT_S} s`);
      if (n === undefined) continue;
      if (n > this.#buf.byteLength) throw new Error(`${op} reply of ${n} bytes exceeds the ${this.#buf.byteLength}-byte buffer`);
      if (n === 0) throw new Error(`${op}: netlink socket returned end of file before NLMSG_DONE`);
      const chunk = parse(this.#buf.subarray(0, n), seq);
      items.push(...chunk.items);
      if (chunk.errno !== undefined) throw syscallError(op, chunk.errno, 'reported by the kernel');
      if (chunk.malformed) throw new Error(`${op}: malformed reply: ${chunk.malformed}`);
      if (chunk.done) return items;
    }
    throw new Error(`${op}: no NLMSG_DONE after ${MAX_DUMP_READS} reads`);
  }

  /** Drops stale replies, then writes `bytes` in one write (an unconnected netlink socket sends to the kernel and autobinds). */
  #send(bytes: Uint8Array, op: string): void {
    const c = libc();
    if (this.#fd < 0) throw new Error(`${op}: netlink socket is closed`);
    this.#drain();
    const n = Number(c.write(this.#fd, bytes, bytes.byteLength));
    if (n !== bytes.byteLength) throw syscallError(`write(${op})`, n < 0 ? c.errno() : 0, n >= 0 ? `short write ${n} of ${bytes.byteLength}` : undefined);
  }

  /**
   * One blocking read into the buffer: the reply's real length (MSG_TRUNC:
   * it may exceed the buffer, which the caller refuses), or undefined when
   * a signal interrupted it (the read still counts against the bound).
   * A timeout throws with `timedOut()` as its detail.
   */
  #recv(op: string, timedOut: () => string): number | undefined {
    const c = libc();
    const n = Number(c.recv(this.#fd, this.#buf, this.#buf.byteLength, MSG_TRUNC));
    if (n >= 0) return n;
    const e = c.errno();
    if (e === EINTR) return undefined;
    throw syscallError(`recv(${op})`, e, e === EAGAIN ? timedOut() : undefined);
  }

  /** Reads and drops whatever is queued, without blocking (bounded). */
  #drain(): void {
    const c = libc();
    for (let i = 0; i < MAX_ACK_READS; i++) {
      if (Number(c.recv(this.#fd, this.#buf, this.#buf.byteLength, MSG_DONTWAIT)) <= 0) return;
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }
}
