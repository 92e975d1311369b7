/* eslint-disable max-lines -- one TCP flow's state machine; its socket, per-branch window, credit and backlog are shared by every handler below */
/**
 * The TCP edge handler (issue #7): one per carried TCP connection, at
 * either gateway. It terminates TCP locally — the application talks to
 * this gateway at LAN round-trip times — and turns the byte stream into
 * messages for the peer(s), and the peer's messages back into the stream.
 *
 * Source side: the intercepted client connection; `open` goes to every
 * branch at once and data follows without waiting for `open-ok` (the far
 * side's socket holds it until its connect completes), saving a WAN round
 * trip. A failed connect comes back as `open-ok` with a status and the
 * client sees a reset, not a hang; so does an open no answer reaches
 * within `openTimeoutMs` (the peer's session never came up, or its
 * gateway is gone): every accepted connection is carried or reset.
 * Destination side: created by `open`, it connects to the destination and
 * answers `open-ok`.
 *
 * Both directions: FIN travels as `half-close` (so half-closed connections
 * keep working), RST as `reset`, and data is flow-controlled per flow with
 * `window` messages (docs/WIRE.md §1): at most FLOW_WINDOW bytes of a
 * flow are outstanding towards a gateway, so a slow application stalls its
 * own flow, never the shared link, and no gateway buffers more than the
 * window per flow. Both ends hold to it: the sender sends no byte beyond
 * its credit (the rest of a socket read waits in the branch's backlog, at
 * most one read, with the socket paused), and the receiver counts what it
 * got and has not granted back: a peer that sends beyond the window (a
 * buggy or compromised gateway; it holds the key) gets the flow reset
 * (status 6) and counted (`windowExceeded`), so a destination application
 * that does not read costs at most the window, whatever the peer sends.
 * The socket is paused when any branch is out of window or its peer link
 * is full, and resumed when both have room.
 *
 * Fan-out: with several branches, the client's bytes go to all of them;
 * the first branch is the primary, whose replies reach the client.
 * Replies of the others are counted and dropped, and their failure ends
 * only that branch.
 */
import type net from 'node:net';
import {
  EMPTY,
  isConnectFailure,
  message,
  newBranch,
  STATUS,
  statusOfError,
  type Branch,
  type CarriedFlow,
  type FlowHost,
  type FlowStatus,
  type FlowTuple,
  tupleKey,
} from './flow.js';
import type { CarriedMessage } from '../../wire/tpo/driver-buffer.js';
import { resetTcpSocket } from '../../sys/tcp-reset.js';

/** Per-flow window (docs/WIRE.md §1): 4 MiB, more than 50 Mbit/s × 600 ms. */
export const FLOW_WINDOW = 4 * 1024 * 1024;
/** Receivers grant more once this much was handed to the application. */
const GRANT_AFTER = FLOW_WINDOW / 4;
/** Data messages carry at most this much (keeps driver buffers at their 32 KiB size). */
const CHUNK = 16 * 1024;

interface TcpBranch extends Branch {
  /** Bytes this side may still send on the branch. */
  credit: number;
  /** The application's bytes not sent yet for lack of credit (the rest of the last read), oldest first. */
  readonly backlog: Uint8Array[];
  /** The application's FIN came while bytes waited in the backlog: half-close follows them. */
  finPending: boolean;
  /** Data bytes the peer sent that this side has not granted back yet: never more than FLOW_WINDOW from an honest peer. */
  unGranted: number;
  /** The peer sent half-close (its side of the stream ended). */
  remoteFin: boolean;
  openOk: boolean;
}

export interface TcpEdgeOptions {
  readonly tuple: FlowTuple;
  readonly role: 'source' | 'destination';
  readonly peers: readonly string[];
  readonly domain: number;
  readonly host: FlowHost;
  readonly entry?: string;
  /** Latency-sensitive (the table entry, or the flag on the flow's first message): its thin messages go redundantly. */
  readonly latencySensitive?: boolean;
  /** Source side: a branch whose `open` is not answered within this is reset (the primary's takes the client with it). */
  readonly openTimeoutMs?: number;
  /** Counters shared by the gateway. */
  readonly counters: {
    droppedReplies: number;
    sequenceErrors: number;
    openTimedOut: number;
    windowExceeded: number;
    connectFailed: number;
    openRefused: number;
  };
}

export class TcpEdge implements CarriedFlow {
  readonly tuple: FlowTuple;
  readonly role: 'source' | 'destination';
  readonly branches: TcpBranch[];
  readonly #o: TcpEdgeOptions;
  #socket: net.Socket | undefined;
  #connected = false;
  #localFin = false;
  #paused = false;
  #ended = false;
  /** Bytes handed to the socket since the last window grant to the primary. */
  #consumed = 0;
  /** The socket is corked until the end of this tick (see #corkForThisTick). */
  #corked = false;
  #state = 'opening';
  #openTimer: NodeJS.Timeout | undefined;
  /** The socket closed after both FINs; the flow ends when no branch has bytes waiting for window. */
  #socketClosed = false;
  #lastActive = performance.now();

  constructor(options: TcpEdgeOptions) {
    this.#o = options;
    this.tuple = options.tuple;
    this.role = options.role;
    this.branches = options.peers.map((p) => ({
      ...newBranch(p),
      credit: FLOW_WINDOW,
      backlog: [],
      finPending: false,
      unGranted: 0,
      remoteFin: false,
      openOk: options.role === 'destination',
    }));
  }

  /** Source side: the intercepted connection. Sends `open` to every branch. */
  attachClient(socket: net.Socket): void {
    this.#connected = true;
    this.#state = 'open';
    for (const b of this.branches) this.#send(b, 'open');
    if (this.#o.openTimeoutMs) {
      this.#openTimer = setTimeout(() => this.#openTimedOut(), this.#o.openTimeoutMs);
      this.#openTimer.unref();
    }
    this.#wire(socket);
    // The socket arrives paused; it reads once the links have room (else at a drain, in turn with the others).
    this.#paused = true;
    this.#updatePause();
  }

  /** Destination side: the connection to the destination, still connecting. */
  attachServer(socket: net.Socket, connectTimeoutMs: number): void {
    socket.setTimeout(connectTimeoutMs, () => {
      if (!this.#connected) socket.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
    });
    socket.once('connect', () => {
      socket.setTimeout(0);
      this.#connected = true;
      this.#state = 'open';
      socket.setNoDelay(true);
      for (const b of this.branches) this.#send(b, 'open-ok');
    });
    this.#wire(socket);
  }

  #wire(socket: net.Socket): void {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onLocalData(chunk));
    socket.on('end', () => {
      // The application's FIN: the other side may still send (half-close).
      this.#localFin = true;
      for (const b of this.branches) {
        if (b.done) continue;
        // After the bytes still waiting for window, never ahead of them.
        if (b.backlog.length) b.finPending = true;
        else this.#send(b, 'half-close');
      }
      this.#maybeDone();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (this.#ended) return;
      const status = statusOfError(err);
      if (!this.#connected && this.role === 'destination') {
        // The destination did not take the connection: the peer hears why (open-ok), and so does the owner.
        this.#o.counters.connectFailed++;
        for (const b of this.branches) this.#o.host.flowFailed?.(this, 'connectFailed', b.peer, { status, ...(err.code ? { error: err.code } : {}) });
      }
      // A failed connect is answered as open-ok with why; later errors as a reset.
      for (const b of this.branches) if (!b.done) this.#send(b, this.#connected ? 'reset' : 'open-ok', EMPTY, status === STATUS.ok ? STATUS.other : status);
      this.#finish('failed');
    });
    socket.on('close', () => {
      if (this.#ended) return;
      // Closed without an error after both FINs: done. Anything else (destroyed locally) is a reset.
      if (!(this.#localFin && this.#primary().remoteFin)) {
        for (const b of this.branches) if (!b.done) this.#send(b, 'reset', EMPTY, STATUS.resetByPeer);
        this.#finish('closed');
        return;
      }
      // The application's last bytes (and its FIN) may still wait for window: the flow ends once they are sent.
      this.#socketClosed = true;
      this.#finishIfSent();
    });
  }

  /** No answer to `open` in time: those branches fail as timed out (the primary's failure resets the client). */
  #openTimedOut(): void {
    this.#openTimer = undefined;
    if (this.#ended) return;
    // Secondaries first: the primary's failure ends the flow and every branch with it.
    for (const b of [...this.branches].reverse()) {
      if (b.done || b.openOk) continue;
      this.#o.counters.openTimedOut++;
      this.#o.host.flowFailed?.(this, 'openTimeout', b.peer);
      this.#send(b, 'reset', EMPTY, STATUS.timedOut);
      this.#branchFailed(b, STATUS.timedOut);
    }
  }

  #primary(): TcpBranch {
    return this.branches[0]!;
  }

  /** When data last moved either way (the gateway's TCP idle timeout reads it). */
  get entry(): string | undefined {
    return this.#o.entry;
  }

  get lastActive(): number {
    return this.#lastActive;
  }

  #onLocalData(chunk: Buffer): void {
    this.#lastActive = performance.now();
    for (const b of this.branches) {
      if (b.done) continue;
      b.backlog.push(chunk);
      this.#sendBacklog(b);
    }
    this.#updatePause();
  }

  /** Sends what the branch's credit allows of its backlog, in chunks; then a pending half-close once it is empty. */
  #sendBacklog(b: TcpBranch): void {
    while (b.backlog.length && b.credit > 0 && !b.done) {
      const head = b.backlog[0]!;
      const n = Math.min(head.length, CHUNK, b.credit);
      const piece = head.subarray(0, n);
      if (n === head.length) b.backlog.shift();
      else b.backlog[0] = head.subarray(n);
      b.credit -= n;
      b.bytesOut += n;
      this.#send(b, 'data', piece);
    }
    if (!b.backlog.length && b.finPending && !b.done) {
      b.finPending = false;
      this.#send(b, 'half-close');
    }
    if (this.#socketClosed) this.#finishIfSent();
  }

  #finishIfSent(): void {
    if (this.branches.every((b) => b.done || (!b.backlog.length && !b.finPending))) this.#finish('closed');
  }

  #send(b: TcpBranch, fn: 'open' | 'open-ok' | 'data' | 'half-close' | 'reset' | 'window', data: Uint8Array = EMPTY, status: number = STATUS.ok): boolean {
    const urgent = b.meter.urgent(data.length);
    const ok = this.#o.host.send(b.peer, this.#o.domain, message(this.tuple, fn, b.seqOut++, data, status, this.#o.latencySensitive), urgent);
    if (fn === 'reset') b.done = true;
    return ok;
  }

  /** Pauses the socket while any live branch lacks window or link room; resumes when all have it. True when it resumed. */
  #updatePause(): boolean {
    const s = this.#socket;
    if (!s || this.#ended) return false;
    let blocked = false;
    for (const b of this.branches) {
      if (b.done) continue;
      if (b.credit <= 0 || b.backlog.length)
        blocked = true; // a 'window' message will resume it
      else if (!this.#o.host.hasRoom(b.peer)) {
        blocked = true;
        // Paused on a full link: make sure a drain comes (this flow's own sends may all have been accepted).
        this.#o.host.requestDrain(b.peer);
      }
    }
    if (blocked && !this.#paused) {
      this.#paused = true;
      s.pause();
    } else if (!blocked && this.#paused) {
      this.#paused = false;
      s.resume();
      return true;
    }
    return false;
  }

  onPeerDrain(): boolean {
    return this.#updatePause();
  }

  onMessage(peer: string, m: CarriedMessage): void {
    const b = this.branches.find((x) => x.peer === peer);
    if (!b || b.done) return;
    if (m.header.sequence !== b.seqIn >>> 0) {
      // The data mover delivers in order: a gap means state was lost (a peer restart).
      this.#o.counters.sequenceErrors++;
      this.#send(b, 'reset', EMPTY, STATUS.other);
      this.#branchFailed(b);
      return;
    }
    b.seqIn++;
    if (m.header.function === 'data') this.#lastActive = performance.now();
    const primary = b === this.#primary();
    switch (m.header.function) {
      case 'open-ok':
        if (m.header.status === STATUS.ok) {
          b.openOk = true;
          if (this.#openTimer && this.branches.every((x) => x.openOk || x.done)) {
            clearTimeout(this.#openTimer);
            this.#openTimer = undefined;
          }
        } else {
          // The far side could not connect (or would not): the client hears a reset now, and the owner why.
          const connect = isConnectFailure(m.header.status);
          if (connect) this.#o.counters.connectFailed++;
          else this.#o.counters.openRefused++;
          this.#o.host.flowFailed?.(this, connect ? 'connectFailed' : 'openRefused', b.peer, { status: m.header.status });
          b.done = true;
          this.#branchFailed(b, m.header.status);
        }
        break;
      case 'data':
        b.bytesIn += m.data.length;
        b.unGranted += m.data.length;
        if (b.unGranted > FLOW_WINDOW) {
          // The peer sent beyond the window it was given: it does not get to make this side buffer more.
          this.#o.counters.windowExceeded++;
          this.#o.host.flowFailed?.(this, 'windowExceeded', b.peer);
          this.#send(b, 'reset', EMPTY, STATUS.limit);
          this.#branchFailed(b, STATUS.limit);
          return;
        }
        if (primary && this.#socket && !this.#socket.destroyed) {
          const n = m.data.length;
          this.#corkForThisTick(this.#socket);
          this.#socket.write(m.data, () => {
            this.#consumed += n;
            if (this.#consumed >= GRANT_AFTER && !b.done) {
              this.#grant(b, this.#consumed);
              this.#consumed = 0;
            }
          });
        } else {
          // A secondary branch's reply: the client hears only the primary.
          this.#o.counters.droppedReplies++;
          this.#grant(b, m.data.length);
        }
        break;
      case 'window':
        if (m.data.length === 4) {
          b.credit += new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0);
          this.#sendBacklog(b);
          this.#updatePause();
        }
        break;
      case 'half-close':
        b.remoteFin = true;
        if (primary) this.#socket?.end();
        this.#maybeDone();
        break;
      case 'close':
        b.remoteFin = true;
        b.done = true;
        if (primary) this.#socket?.end();
        this.#maybeDone();
        break;
      case 'reset':
        b.done = true;
        this.#branchFailed(b, m.header.status);
        break;
      default:
        break;
    }
  }

  /**
   * The messages of one received batch reach the application in one
   * writev: the socket is corked at the first write and uncorked once the
   * batch (this tick) is done. Writing each message on its own cost the
   * receiving gateway about a tenth of its main thread at 50-200 Mbit/s
   * (V8 profile: writeBuffer).
   */
  #corkForThisTick(socket: net.Socket): void {
    if (this.#corked) return;
    this.#corked = true;
    socket.cork();
    process.nextTick(() => {
      this.#corked = false;
      // end() and destroy() flush or drop what is corked themselves.
      if (!socket.destroyed && socket.writableCorked) socket.uncork();
    });
  }

  #grant(b: TcpBranch, bytes: number): void {
    b.unGranted -= bytes;
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, Math.min(bytes, 0xffffffff));
    this.#send(b, 'window', d);
  }

  /** A branch ended badly: the primary takes the client down with a reset; a secondary only itself. */
  #branchFailed(b: TcpBranch, status: number = STATUS.other): void {
    b.done = true;
    if (b === this.#primary()) {
      this.#state = status === STATUS.ok ? 'reset' : `reset (${status})`;
      for (const x of this.branches) if (!x.done) this.#send(x, 'reset', EMPTY, status);
      const s = this.#socket;
      if (s && !s.destroyed) {
        // RST to the application: it learns the far end failed instead of waiting.
        if (this.#connected) resetTcpSocket(s);
        else s.destroy();
      }
      this.#finish(this.#state);
    } else {
      this.#updatePause();
    }
  }

  #maybeDone(): void {
    const p = this.#primary();
    if (this.#localFin && p.remoteFin) this.#state = 'closing';
  }

  /** Ends the flow here (idle timeout): every live branch's peer is told with a reset, the application gets an RST. */
  reset(status: number): void {
    if (this.#ended) return;
    for (const b of this.branches) if (!b.done) this.#send(b, 'reset', EMPTY, status);
    this.#branchFailed(this.#primary(), status);
  }

  resetBranch(peer: string, status: number): void {
    const b = this.branches.find((x) => x.peer === peer);
    if (!b || b.done) return;
    this.#send(b, 'reset', EMPTY, status);
    this.#branchFailed(b, status);
  }

  abort(peer: string, status: number): void {
    const b = this.branches.find((x) => x.peer === peer);
    if (!b || b.done) return;
    this.#branchFailed(b, status);
  }

  #finish(state: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#state = state;
    if (this.#openTimer) clearTimeout(this.#openTimer);
    for (const b of this.branches) {
      b.done = true;
      b.backlog.length = 0;
    }
    this.#o.host.forget(this);
  }

  status(): FlowStatus {
    const p = this.#primary();
    return {
      tuple: tupleKey(this.tuple),
      role: this.role,
      peers: this.branches.map((b) => b.peer),
      state: this.#paused ? `${this.#state}, paused` : this.#state,
      bytesOut: p.bytesOut,
      bytesIn: p.bytesIn,
      pendingToApp: this.#socket && !this.#socket.destroyed ? this.#socket.writableLength : 0,
      ...(this.#o.entry ? { entry: this.#o.entry } : {}),
    };
  }
}
