/**
 * A veth's counters as the xdp suite reads them, inside a bench namespace:
 * the driver's own (`ethtool -S`: per-queue XDP counters) and the device's
 * (`ip -s -j link`: skbs dropped on transmit, where a socket sender's
 * frames that found the peer's ring full are counted).
 */
import type { BenchTopology } from './topology.js';

export async function ethtoolStats(topo: BenchTopology, ns: string, ifname: string): Promise<Record<string, number>> {
  const text = await topo.exec(ns, 'ethtool', ['-S', ifname]);
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^\s*([\w]+):\s*(\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

export async function txDropped(topo: BenchTopology, ns: string, ifname: string): Promise<number> {
  const [link] = JSON.parse(await topo.exec(ns, 'ip', ['-s', '-j', 'link', 'show', ifname])) as { stats64?: { tx?: { dropped?: number } } }[];
  return link?.stats64?.tx?.dropped ?? 0;
}
