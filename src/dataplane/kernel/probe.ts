/**
 * Whether the kernel tier can run here (`sluice doctor`, tier selection):
 * Linux 6.6+ for tcx links, the privileges bpf() needs, the FFI, a usable
 * batched companion, a loadable bpf/sluice.o and a bpf() the host permits.
 * Also the notes the plane and the probe share about what the program holds.
 */
import { readFileSync } from 'node:fs';
import type { TierProbe } from '../common/types.js';
import { batchedProvider } from '../batched/batched-plane.js';
import { closeFd, mapCreate, BPF_MAP_TYPE } from '../../sys/bpf.js';
import { ffiAvailable } from '../../sys/probe.js';
import { readObject } from './program.js';
import { chooseHooks } from './attach.js';
import { CHUNK, MAX_SUBS, RESUME_RUN } from './layout.js';
import { SUGGESTED_BACKLOG, readBacklogSetting, readSoftnetStat } from './softnet.js';
import { leftoverTuning } from './host-tuning.js';
import { driverOf } from './xdp.js';
import { dumpLinkXdp } from '../../sys/netlink/link-xdp.js';

/**
 * Root, or CAP_BPF (39), CAP_NET_ADMIN (12) and CAP_PERFMON (38) in the
 * effective set: without CAP_PERFMON the verifier refuses the program's
 * pointer arithmetic ("prohibited for !root", EACCES), seen on 6.18.
 */
function privilegeProblem(): string | undefined {
  if (process.getuid?.() === 0) return undefined;
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
    const caps = BigInt(`0x${hex}`);
    const has = (bit: number) => ((caps >> BigInt(bit)) & 1n) === 1n;
    if (has(39) && has(12) && has(38)) return undefined;
  } catch {
    // No /proc: treat as unprivileged.
  }
  return 'needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON';
}

/** What the program holds, for notes and `sluice doctor`. */
export function programNote(insns: number): string {
  return `program: ${insns} instructions; up to ${MAX_SUBS} subscribers per flow in the kernel (next hops resolved ${CHUNK} per run, by tail call; copies at an interface's input ${RESUME_RUN} per run, the datagram going back through the input queue between runs), the rest spilled to the batched tier`;
}

/**
 * Copies for local (lo) and veth subscribers wait in the CPU's backlog
 * queue until the program's run ends: a datagram for N of them queues N.
 * The setting, the drops since boot (softnet.ts) and what a crashed
 * `--tune-host` left (host-tuning.ts).
 */
export function backlogNotes(): string[] {
  const v = readBacklogSetting();
  const stat = readSoftnetStat();
  const drops = stat
    ? `${stat.dropped} packet(s) dropped there since boot${stat.dropped ? ' (some may predate Sluice; the kernel tier counts those while its flows run as hostBacklog)' : ''}`
    : '/proc/net/softnet_stat unreadable: its drops are not counted';
  const leftover = leftoverTuning();
  return [
    // Not visible in a network namespace other than the initial one (the sysctl is global).
    `net.core.netdev_max_backlog=${v ?? '?'}: copies to local or veth subscribers wait there (from the network: ${RESUME_RUN + 1} places per waiting datagram; from local senders: all its copies); raise it (e.g. ${SUGGESTED_BACKLOG}, or run with --tune-host) for fan-outs of hundreds with bursts; ${drops}`,
    ...(leftover ? [leftover] : []),
  ];
}

/** Where redirect flows would run at XDP, and in which mode a program is attached there now (a running kernel tier's). */
function xdpNote(ingress: readonly { name: string; ifindex: number }[]): string {
  let now: Map<number, { xdp: string; kind: string }>;
  try {
    now = new Map(dumpLinkXdp().map((l) => [l.ifindex, l]));
  } catch (err) {
    return `xdp: attached modes unreadable: ${(err as Error).message}`;
  }
  const list = ingress.map((i) => {
    const link = now.get(i.ifindex);
    const mode = link?.xdp ?? 'none';
    return `${i.name} (driver ${driverOf(i.name) ?? (link?.kind || 'unknown')}; ${mode === 'none' ? 'no XDP program now' : `XDP attached now in ${mode} mode`})`;
  });
  return `xdp (kernelHook 'xdp': redirect flows in the driver, native mode where it has one, else generic; 'auto': native only): ${list.length ? list.join(', ') : 'no interface but lo'}`;
}

/** Kernel version as [major, minor]. */
function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(readFileSync('/proc/sys/kernel/osrelease', 'utf8'));
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export async function probeKernelTier(): Promise<TierProbe> {
  const no = (detail: string, notes?: string[]): TierProbe => ({ tier: 'kernel', available: false, detail, ...(notes ? { notes } : {}) });
  if (process.platform !== 'linux') return no(`needs Linux (this is ${process.platform})`);
  const [maj, min] = kernelVersion();
  if (maj < 6 || (maj === 6 && min < 6)) return no(`needs Linux 6.6 or newer for tcx links (this is ${maj}.${min})`);
  const priv = privilegeProblem();
  if (priv) return no(priv);
  const ffi = ffiAvailable();
  if (!ffi.ok) return no(ffi.reason);
  const batched = await batchedProvider.probe();
  if (!batched.available) return no(`its companion, the batched tier, is unavailable: ${batched.detail}`);
  let insns = 0;
  try {
    insns = readObject().programs[0]!.insns.length / 8;
  } catch (err) {
    return no(`bpf/sluice.o is unusable: ${(err as Error).message}`);
  }
  try {
    // bpf() permitted here (seccomp, lockdown and unprivileged_bpf_disabled say otherwise)?
    closeFd(mapCreate({ type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, flags: 0, name: 'sl_probe' }));
  } catch (err) {
    return no(`bpf() refused: ${(err as Error).message}`);
  }
  const { hooks, skipped } = chooseHooks();
  const notes = [
    `tcx hooks: ${hooks.map((h) => `${h.iface.name} ${h.direction}`).join(', ')}`,
    ...(skipped.length ? [`not attached: ${skipped.join(', ')}`] : []),
    programNote(insns),
    xdpNote(hooks.filter((h) => h.direction === 'ingress').map((h) => h.iface)),
    'sets on lo: net.ipv4.conf.lo.{forwarding,route_localnet,accept_local}=1, net.ipv6.conf.lo.forwarding=1 (route lookups and local delivery from eBPF); restored when no kernel-tier process and no pinned state needs them any more',
    'checks at ingress as the stack does: lengths, checksums, martian sources and rp_filter (per interface, refreshed every 2 s); what fails is left to the stack. Netfilter rules (an IPv6 rpfilter too) do not apply to what it carries: it runs before them',
    ...backlogNotes(),
  ];
  return { tier: 'kernel', available: true, detail: `eBPF on tcx (Linux ${maj}.${min}), with the batched tier as companion`, notes };
}
