/**
 * What the stack's source checks for a datagram arriving on an interface
 * depend on, read from /proc/sys and /sys for the kernel tier's `ifcfg`
 * map: the program runs before those checks (tcx ingress comes before IP
 * input routing) and mirrors them, so it must know the host's settings.
 *
 * - rp_filter: the kernel applies max(conf/all, conf/<dev>);
 * - src_valid_mark: the reverse lookup then uses the packet mark, which
 *   netfilter may still change after tcx: the program cannot mirror it;
 * - a master device (bridge port, bond slave, VRF slave): the stack checks
 *   the datagram against the master (or the VRF's table), not this device;
 * - whether the interface has an IPv4 address (loose mode needs one).
 */
import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { InterfaceConfig } from './layout.js';

function sysctl(path: string): number | undefined {
  try {
    const v = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Names of the interfaces that have an IPv4 address (read once per refresh, not per interface). */
export function interfacesWithIpv4(): Set<string> {
  return new Set(Object.entries(networkInterfaces()).flatMap(([name, list]) => ((list ?? []).some((a) => a.family === 'IPv4') ? [name] : [])));
}

/** `undefined` when the interface's IPv4 settings cannot be read (then its datagrams go to the stack). */
export function readInterfaceConfig(name: string, withIpv4: ReadonlySet<string>): InterfaceConfig | undefined {
  const conf = (dev: string, key: string) => sysctl(`/proc/sys/net/ipv4/conf/${dev}/${key}`);
  const allRp = conf('all', 'rp_filter');
  const devRp = conf(name, 'rp_filter');
  if (allRp === undefined || devRp === undefined) return undefined;
  const mark = (conf('all', 'src_valid_mark') ?? 1) !== 0 || (conf(name, 'src_valid_mark') ?? 1) !== 0;
  const enslaved = existsSync(`/sys/class/net/${name}/master`);
  return { rpFilter: Math.max(allRp, devRp), hasV4: withIpv4.has(name), unsure: mark || enslaved };
}
