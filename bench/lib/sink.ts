/**
 * The sink: nothing receives in user space. A small eBPF program at tcx
 * ingress of the sink's interface (bench/lib/sink-prog.ts) counts and drops
 * every UDP datagram to the subscriber ports before the IP stack sees it, so
 * the sink costs a few dozen instructions per packet instead of the IP stack
 * and a firewall rule, wherever its receive path runs (e.g. on the
 * generator's CPU, with receive steering), and is not what limits a
 * measurement. Any other IPv4 UDP is counted (and dropped) too, as
 * a sanity check that the relay sends where it was told; everything else
 * (ARP, IPv6 neighbour discovery) passes, so neighbours still resolve.
 *
 * The program and its maps are held by a resident helper process in the
 * sink namespace (bench/tools/sink-counter.ts), which this class talks to
 * over stdin/stdout: it attaches there because tcx needs the interface's
 * ifindex in that namespace, and it stays resident because the program is
 * attached only while the link fd is open (so a crashed harness leaves
 * nothing attached). Reading the counters is a map lookup, not a command.
 *
 * The counters only grow; a trial reads them before and after.
 *
 * A relay that sends with UDP GSO hands the veth one buffer holding many
 * datagrams, and a veth passes it on unsegmented, so the program sees one
 * packet for many datagrams. The datagram count is therefore derived from
 * bytes: the program counts bytes from the IPv4 header on (one 20 B IP + 8 B
 * UDP header per buffer), and every datagram of a trial has the same payload
 * size, so datagrams = (bytes - 28 x buffers) / size. See datagrams().
 */
import { fileURLToPath } from 'node:url';
import type { NsProcess } from '../../harness/netns/netns.js';
import type { BenchTopology } from './topology.js';

const COUNTER = fileURLToPath(new URL('../tools/sink-counter.ts', import.meta.url));
const READY_TIMEOUT_MS = 15_000;
const REPLY_TIMEOUT_MS = 5_000;

export interface SinkCounts {
  /** Packets (skbs; a GSO buffer is one) to the subscriber port range. */
  subscribers: number;
  /** Their bytes from the IPv4 header on. */
  subscriberBytes: number;
  /** Any other UDP datagrams that reached the sink. */
  other: number;
}

export interface SinkPlace {
  /** Logical namespace of the sink; default 'sink'. */
  ns?: string;
  /** Its interface towards the relay; default 'sink0'. */
  ifname?: string;
}

export class Sink {
  /** Replies come in request order; this chain keeps one request in flight. */
  #queue: Promise<unknown> = Promise.resolve();

  readonly #counter: NsProcess;

  private constructor(counter: NsProcess) {
    this.#counter = counter;
  }

  static async create(topo: BenchTopology, place: SinkPlace = {}): Promise<Sink> {
    const ns = place.ns ?? 'sink';
    const ifname = place.ifname ?? 'sink0';
    const counter = topo.runNode(ns, COUNTER, ['--ifname', ifname], { stdin: 'pipe' });
    try {
      await counter.waitForLine(/^\{"event":"ready"/, { timeoutMs: READY_TIMEOUT_MS, stream: 'stdout' });
    } catch (err) {
      await counter.stop(1_000);
      throw new Error(`sink: the eBPF counter on ${ns}/${ifname} did not come up within ${READY_TIMEOUT_MS / 1000} s: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new Sink(counter);
  }

  /** Count and drop datagrams to ports [first, first+count-1]; replaces the previous range. */
  async setPorts(first: number, count: number): Promise<void> {
    const reply = await this.#ask(`ports ${first} ${count}`);
    if (reply !== 'ok') throw new Error(`sink: ports ${first} ${count}: ${reply}`);
  }

  async read(): Promise<SinkCounts> {
    const reply = await this.#ask('read');
    if (!reply.startsWith('{')) throw new Error(`sink: read: ${reply}`);
    return JSON.parse(reply) as SinkCounts;
  }

  /** Forget runs so far (see longestRun). */
  async resetRuns(): Promise<void> {
    const reply = await this.#ask('runs reset');
    if (reply !== 'ok') throw new Error(`sink: runs reset: ${reply}`);
  }

  /**
   * The longest run of consecutive packets to one subscriber port since the
   * last resetRuns(), as received (a GSO buffer counts as its segments).
   */
  async longestRun(): Promise<number> {
    const reply = await this.#ask('runs');
    if (!reply.startsWith('{')) throw new Error(`sink: runs: ${reply}`);
    return (JSON.parse(reply) as { longestRun: number }).longestRun;
  }

  /** Detach the program (the helper exits when its stdin closes). Never throws. */
  async close(): Promise<void> {
    this.#counter.endInput();
    try {
      await this.#counter.waitExit(3_000);
    } catch {
      await this.#counter.stop(1_000);
    }
  }

  #ask(command: string): Promise<string> {
    const next = this.#queue.then(async () => {
      const reply = this.#counter.nextLine({ timeoutMs: REPLY_TIMEOUT_MS });
      reply.catch(() => undefined); // awaited below unless the write throws
      this.#counter.writeLine(command);
      return reply;
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }
}

const IPV4_UDP_HEADERS = 28;

/** Datagrams of `size` payload bytes between two readings (exact for one payload size; see the top). */
export function datagrams(before: SinkCounts, after: SinkCounts, size: number): number {
  const skbs = after.subscribers - before.subscribers;
  const bytes = after.subscriberBytes - before.subscriberBytes;
  return Math.round((bytes - IPV4_UDP_HEADERS * skbs) / size);
}
