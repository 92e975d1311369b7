/**
 * The batched tier's loop, run in its own worker thread: ppoll over every
 * flow's listen socket and a wake-up eventfd; recvmmsg from ready sockets;
 * flush held datagrams with sendmmsg when a flow reaches its batch size or
 * its oldest datagram has waited `holdMs`. Requests from the application
 * (add/update/remove/close) arrive on the worker's port and are read
 * synchronously (WorkerPort.poll) when the eventfd fires, between batches —
 * traffic keeps flowing while policies change.
 */
import type { Handlers, WorkerPort } from '../../worker/port.js';
import { Poller, Waker } from '../../sys/poller.js';
import { RecvRing } from '../../sys/recv-ring.js';
import { POLLERR, POLLIN, POLLNVAL, UIO_MAXIOV } from '../../sys/constants.js';
import { EngineFlow } from './engine-flow.js';
import { OwnSockets } from '../common/own-sockets.js';
import { healthClock } from '../common/subscriber-health.js';
import { SendBatch } from './send-batch.js';
import { D } from './shared-counters.js';
import type { BatchedNotifications, BatchedRequests, EngineOptions, WorkerData } from './protocol.js';

/** Upper bound on one ppoll, so a terminating worker is never stuck in the kernel for long. */
const MAX_WAIT_NS = 100_000_000;
/** recvmmsg calls per ready socket per loop turn: a busy flow cannot starve the others. */
const ROUNDS_PER_TURN = 4;
/**
 * recvmmsg calls an update may spend reading what its flow's socket already
 * holds: bounded, so a flood cannot hold a policy change back for long.
 */
const ROUNDS_BEFORE_UPDATE = 64;
/** Time one flush may spend waiting for a full socket buffer before dropping (queueFull). */
const SEND_RETRY_BUDGET_NS = 2_000_000;

export class BatchedEngine {
  readonly #port: WorkerPort<BatchedRequests, BatchedNotifications, WorkerData>;
  readonly #waker: Waker;
  readonly #options: EngineOptions;
  readonly #ring: RecvRing;
  readonly #batch = new SendBatch(UIO_MAXIOV, 8 * UIO_MAXIOV);
  readonly #fallback = new SendBatch(128, 128);
  readonly #poller = new Poller();
  readonly #flows = new Map<string, EngineFlow>();
  /** Every socket of every flow: datagrams from them are relay loops. */
  readonly #own = new OwnSockets();
  /** Flows in poll order: entry i+1 of the poll set is #order[i]'s listen socket. */
  #order: EngineFlow[] = [];
  /** Then, from entry #order.length + 1: the flows' other sockets, watched for POLLERR (ICMP errors) only. */
  #extra: { flow: EngineFlow; fd: number }[] = [];
  /** When the next suspended destination is due to be tried again (healthClock). */
  #nextResume = Infinity;
  #running = true;
  readonly #budget = { ns: 0 };

  constructor(port: WorkerPort<BatchedRequests, BatchedNotifications, WorkerData>) {
    this.#port = port;
    this.#waker = new Waker(port.data.wakeFd);
    const options = port.data.options;
    this.#options = options;
    this.#ring = new RecvRing(options.slots, options.batch);
    this.#rebuildPollSet();
  }

  run(): void {
    this.#port.ready();
    const hold = this.#options.holdMs;
    while (this.#running) {
      const order = this.#order;
      // A flow that holds datagrams is not watched until its deadline: what
      // arrives meanwhile waits in the socket buffer and is read in one go
      // at the deadline. One wake-up per batch instead of one per datagram
      // is most of the CPU a low-rate stream costs.
      for (let i = 0; i < order.length; i++) this.#poller.setEvents(i + 1, hold > 0 && order[i]!.held > 0 ? 0 : POLLIN);
      this.#poller.wait(this.#waitNs());
      this.#assertOpen();
      if (this.#poller.revents(0) & POLLIN) {
        this.#waker.drain();
        this.#port.poll(this.#handlers);
      }
      this.#readErrors(order);
      const now = performance.now();
      for (let i = 0; i < order.length; i++) {
        const flow = order[i]!;
        const due = flow.held > 0 && now - flow.heldSince >= hold;
        if (due || this.#poller.revents(i + 1) & (POLLIN | POLLERR)) this.#drain(flow);
      }
      if (healthClock() >= this.#nextResume) this.#resumeDue();
      this.#flushDue();
    }
  }

  /**
   * A descriptor closed under the engine (POLLNVAL) would make every ppoll
   * return at once: a silent busy loop. It is a fatal fault: the worker
   * stops and the application reports the engine failed.
   */
  #assertOpen(): void {
    const n = this.#order.length + 1 + this.#extra.length;
    for (let i = 0; i < n; i++) {
      if (this.#poller.revents(i) & POLLNVAL) {
        const what =
          i === 0
            ? 'the wake-up eventfd'
            : i <= this.#order.length
              ? `the listen socket of flow '${this.#order[i - 1]!.name}'`
              : `a socket of flow '${this.#extra[i - 1 - this.#order.length]!.flow.name}'`;
        throw new Error(`ppoll: ${what} is no longer open (POLLNVAL)`);
      }
    }
  }

  /**
   * ICMP errors: poll reports POLLERR while a socket's error queue holds
   * any, whatever events were asked for; reading them is what stops it.
   * `order` is the poll set the revents belong to (requests handled just
   * before may have replaced it: its entries then report nothing).
   */
  #readErrors(order: readonly EngineFlow[]): void {
    if (order !== this.#order) return;
    let read = false;
    const wall = healthClock();
    for (let i = 0; i < order.length; i++) {
      if (this.#poller.revents(i + 1) & POLLERR) {
        read = true;
        this.#guard(order[i]!, () => order[i]!.readErrors(order[i]!.socket.fd, wall));
      }
    }
    for (let j = 0; j < this.#extra.length; j++) {
      if (this.#poller.revents(order.length + 1 + j) & POLLERR) {
        read = true;
        const { flow, fd } = this.#extra[j]!;
        this.#guard(flow, () => flow.readErrors(fd, wall));
      }
    }
    if (read) this.#resumeDue();
  }

  /** Ends due suspensions and finds the next deadline. */
  #resumeDue(): void {
    const wall = healthClock();
    let next = Infinity;
    for (const flow of this.#order) next = Math.min(next, flow.resumeDue(wall));
    this.#nextResume = next;
  }

  #guard(flow: EngineFlow, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#fault(flow, e);
    }
  }

  #drain(flow: EngineFlow, rounds = ROUNDS_PER_TURN): void {
    try {
      for (let r = 0; r < rounds; r++) {
        if (this.#ring.freeSlots < this.#options.batch) this.#flushAll();
        const full = flow.receive(this.#ring);
        if (full) this.#flush(flow);
        else break;
      }
    } catch (e) {
      this.#fault(flow, e);
    }
  }

  /** Flushes flows whose oldest held datagram has waited long enough. */
  #flushDue(): void {
    const now = performance.now();
    const hold = this.#options.holdMs;
    for (const flow of this.#order) {
      if (flow.held > 0 && now - flow.heldSince >= hold) this.#flush(flow);
    }
  }

  #flushAll(): void {
    for (const flow of this.#order) this.#flush(flow);
  }

  #flush(flow: EngineFlow): void {
    if (flow.held === 0) return;
    this.#budget.ns = SEND_RETRY_BUDGET_NS;
    try {
      flow.flush(this.#ring, this.#batch, this.#fallback, this.#budget);
    } catch (e) {
      flow.discard(this.#ring);
      this.#fault(flow, e);
    }
  }

  /** ppoll timeout: until the earliest hold deadline or suspension end, else the idle cap. */
  #waitNs(): number {
    let wait = Math.min(MAX_WAIT_NS, (this.#nextResume - healthClock()) * 1e6);
    const now = performance.now();
    for (const flow of this.#order) {
      if (flow.held === 0) continue;
      const left = (flow.heldSince + this.#options.holdMs - now) * 1e6;
      if (left < wait) wait = left;
    }
    return Math.max(0, Math.floor(wait));
  }

  /** One handler per request; each returns the reply (a throw becomes its error). */
  readonly #handlers: Handlers<BatchedRequests> = {
    add: (req) => {
      if (this.#flows.has(req.flow)) throw new Error(`flow '${req.flow}' exists in the engine`);
      const via = req.options?.sendVia === undefined ? undefined : this.#need(req.options.sendVia);
      const flow = EngineFlow.open(req.flow, req.plan, req.counters, req.destinations, this.#options, {
        own: this.#own,
        ...(via ? { via } : {}),
        ...(req.options?.onlyMark === undefined ? {} : { onlyMark: req.options.onlyMark }),
        ...(req.options?.reusePort ? { reusePort: true } : {}),
        notify: (name, to, until) => this.#port.notify('suspension', { flow: name, to, until }),
      });
      this.#flows.set(req.flow, flow);
      this.#rebuildPollSet();
      return { listen: flow.listen, fds: flow.fds() };
    },
    update: (req) => {
      const flow = this.#need(req.flow);
      const join = req.join;
      // Datagrams the host took in before the change leave under the old
      // plan: those held, and (except for a join, which is placed exactly at
      // a counter's count) those still waiting in the socket, as a flow that
      // holds a batch is not read until its deadline. Otherwise a subscriber
      // removed under traffic would miss up to a hold time of datagrams sent
      // before its removal.
      if (!join) this.#drain(flow, ROUNDS_BEFORE_UPDATE);
      this.#flush(flow);
      const count = join ? (req.destinations[join.counter]?.counters[D.packetsOut] ?? 0) : 0;
      if (join && count !== join.after && !join.force) return { fds: flow.fds(), applied: false, count };
      flow.update(req.plan, req.destinations);
      // An update may open a socket for the other family: watch it too.
      this.#rebuildPollSet();
      this.#resumeDue();
      return join ? { fds: flow.fds(), applied: true, count } : { fds: flow.fds() };
    },
    suspend: (req) => {
      const flow = this.#need(req.flow);
      this.#flush(flow);
      flow.mirrorSuspension(req.to, req.until, healthClock());
      this.#resumeDue();
      return undefined;
    },
    remove: (req) => {
      const flow = this.#flows.get(req.flow);
      if (flow) {
        this.#flush(flow);
        flow.close();
        this.#flows.delete(req.flow);
        this.#rebuildPollSet();
      }
      return undefined;
    },
    close: () => {
      this.#flushAll();
      for (const flow of this.#flows.values()) flow.close();
      this.#flows.clear();
      this.#rebuildPollSet();
      this.#running = false;
      return undefined;
    },
  };

  #need(name: string): EngineFlow {
    const flow = this.#flows.get(name);
    if (!flow) throw new Error(`no flow '${name}' in the engine`);
    return flow;
  }

  #rebuildPollSet(): void {
    this.#order = [...this.#flows.values()];
    this.#extra = this.#order.flatMap((flow) =>
      flow
        .errorFds()
        .filter((fd) => fd !== flow.socket.fd)
        .map((fd) => ({ flow, fd })),
    );
    const fds = [this.#waker.fd, ...this.#order.map((f) => f.socket.fd), ...this.#extra.map((e) => e.fd)];
    this.#poller.set(
      fds,
      fds.map((_, i) => (i <= this.#order.length ? POLLIN : 0)),
    );
  }

  #fault(flow: EngineFlow, e: unknown): void {
    this.#port.fault(e, { fatal: false, scope: flow.name });
  }
}
