/**
 * The sink: nothing receives in user space. An nftables rule at the
 * earliest IPv4 hook (prerouting, priority raw) in the sink namespace counts
 * and drops every UDP datagram to the subscriber ports, so the sink costs
 * one rule match per packet and can never be what limits a measurement.
 * A second rule counts (and drops) any other UDP, as a sanity check that the
 * relay sends where it was told.
 *
 * The counters only grow; a trial reads them before and after.
 *
 * A relay that sends with UDP GSO hands the veth one buffer holding many
 * datagrams, and a veth passes it on unsegmented, so the rule sees one
 * packet for many datagrams. The datagram count is therefore derived from
 * bytes: nft counts IPv4 bytes (one 20 B IP + 8 B UDP header per buffer),
 * and every datagram of a trial has the same payload size, so
 * datagrams = (bytes - 28 x buffers) / size. See datagrams().
 */
import type { BenchTopology } from './topology.js';

const TABLE = 'sluice_bench';

export interface SinkCounts {
  /** Packets (skbs; a GSO buffer is one) to the subscriber port range. */
  subscribers: number;
  /** Their bytes from the IPv4 header on. */
  subscriberBytes: number;
  /** Any other UDP datagrams that reached the sink. */
  other: number;
}

export class Sink {
  private constructor(private readonly topo: BenchTopology) {}

  static async create(topo: BenchTopology): Promise<Sink> {
    const sink = new Sink(topo);
    await topo.exec('sink', 'nft', ['-f', '-'], {
      input: `table ip ${TABLE} {\n  chain pre {\n    type filter hook prerouting priority raw; policy accept;\n  }\n}\n`,
    });
    return sink;
  }

  /** Count and drop datagrams to ports [first, first+count-1]; replaces the previous rules. */
  async setPorts(first: number, count: number): Promise<void> {
    const range = count > 1 ? `${first}-${first + count - 1}` : String(first);
    await this.topo.exec('sink', 'nft', ['-f', '-'], {
      input: [
        `flush chain ip ${TABLE} pre`,
        `add rule ip ${TABLE} pre udp dport ${range} counter drop comment "subscribers"`,
        `add rule ip ${TABLE} pre meta l4proto udp counter drop comment "other"`,
        '',
      ].join('\n'),
    });
  }

  async read(): Promise<SinkCounts> {
    const out = await this.topo.exec('sink', 'nft', ['-j', 'list', 'chain', 'ip', TABLE, 'pre']);
    const parsed = JSON.parse(out) as { nftables: Array<{ rule?: { comment?: string; expr: Array<{ counter?: { packets: number; bytes: number } }> } }> };
    const counts: SinkCounts = { subscribers: 0, subscriberBytes: 0, other: 0 };
    for (const item of parsed.nftables) {
      const counter = item.rule?.expr.find((e) => e.counter)?.counter;
      if (!counter) continue;
      if (item.rule?.comment === 'subscribers') {
        counts.subscribers = counter.packets;
        counts.subscriberBytes = counter.bytes;
      } else if (item.rule?.comment === 'other') {
        counts.other = counter.packets;
      }
    }
    return counts;
  }
}

const IPV4_UDP_HEADERS = 28;

/** Datagrams of `size` payload bytes between two readings (exact for one payload size; see the top). */
export function datagrams(before: SinkCounts, after: SinkCounts, size: number): number {
  const skbs = after.subscribers - before.subscribers;
  const bytes = after.subscriberBytes - before.subscriberBytes;
  return Math.round((bytes - IPV4_UDP_HEADERS * skbs) / size);
}
