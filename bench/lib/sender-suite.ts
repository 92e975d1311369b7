/**
 * The sender bench (issue #5, parts a, b and d): COUNT datagrams sent as
 * fast as possible from the relay namespace (pinned to the relay's CPU) to
 * the sink, several ways side by side (SENDER_WAYS): aggregates through
 * Sluice's batched engine against one node:dgram send or one sendto(2) per
 * datagram, and segmented writes with and without GSO against node:dgram.
 * Reported per way: packets per CPU-second (delivered at the sink / busy
 * time of the sender's core, from the exact core clock, so the kernel's
 * share of sending counts too), send system calls per packet (counted
 * exactly for that process by an eBPF program on sys_enter), and the
 * longest run of consecutive packets to one destination at the sink.
 *
 * Ways that send UDP GSO messages run twice: with the segmentation on the
 * sender's CPU (gso_max_segs 1 on the relay's out0, as a NIC without UDP
 * segmentation offload; the bench's default for everything) and with the
 * GSO buffer crossing the veth whole (as a NIC that segments, USO).
 */
import type { BenchTopology } from './topology.js';
import { RELAY_CPU, SINK_ADDR, spawnPinned } from './topology.js';
import { datagrams, type Sink } from './sink.js';
import type { CoreClock } from './irq-clock.js';
import { SendSyscallCounter } from './syscall-count.js';
import { coreBusy } from './cpu.js';

export const SENDER_MODES = ['aggregate', 'dgram', 'sendto', 'write-gso', 'write-gso16', 'write-nogso', 'write-strict', 'write-dgram'] as const;
export type SenderMode = (typeof SENDER_MODES)[number];

export interface SenderWay {
  /** Unique within the suite: the mode, plus '-nic' when the GSO buffers cross whole. */
  id: string;
  mode: SenderMode;
  /** Payload (aggregate, per-packet ways) or packet size (writes). */
  size: number;
  /** The GSO buffers cross the veth whole (the NIC segments). */
  nicSegments: boolean;
  label: string;
}

/** Part a: small messages; parts b and d: MPEG-TS-sized packets (7 x 188 B). */
export const AGGREGATE_SIZE = 200;
export const WRITE_PACKET_SIZE = 1316;

export const SENDER_WAYS: readonly SenderWay[] = [
  { id: 'aggregate', mode: 'aggregate', size: AGGREGATE_SIZE, nicSegments: false, label: 'Sluice.sendAggregate (batched engine)' },
  { id: 'aggregate-nic', mode: 'aggregate', size: AGGREGATE_SIZE, nicSegments: true, label: 'Sluice.sendAggregate, NIC segments (USO)' },
  { id: 'dgram', mode: 'dgram', size: AGGREGATE_SIZE, nicSegments: false, label: 'node:dgram, one send per packet' },
  { id: 'sendto', mode: 'sendto', size: AGGREGATE_SIZE, nicSegments: false, label: 'sendto(2) per packet (FFI)' },
  { id: 'write-gso', mode: 'write-gso', size: WRITE_PACKET_SIZE, nicSegments: false, label: 'Sluice.write, burst 64, GSO' },
  { id: 'write-gso-nic', mode: 'write-gso', size: WRITE_PACKET_SIZE, nicSegments: true, label: 'Sluice.write, burst 64, GSO, NIC segments (USO)' },
  { id: 'write-gso16', mode: 'write-gso16', size: WRITE_PACKET_SIZE, nicSegments: false, label: 'Sluice.write, burst 16, GSO' },
  { id: 'write-nogso', mode: 'write-nogso', size: WRITE_PACKET_SIZE, nicSegments: false, label: 'Sluice.write, burst 64, no GSO' },
  { id: 'write-strict', mode: 'write-strict', size: WRITE_PACKET_SIZE, nicSegments: false, label: 'Sluice.write, burst 1 (strict interleave)' },
  {
    id: 'write-dgram',
    mode: 'write-dgram',
    size: WRITE_PACKET_SIZE,
    nicSegments: false,
    label: 'node:dgram, one send per packet, one destination after another',
  },
];

export interface SenderTrial {
  way: string;
  mode: SenderMode;
  nicSegments: boolean;
  repeat: number;
  count: number;
  size: number;
  dests: number;
  sent: number;
  errors: number;
  delivered: number;
  elapsedS: number;
  coreS: number;
  /** NET_RX softirq time on the sender's core: the sink's receive path (exact core clock only; else NaN). */
  sinkRxS: number;
  /** The sending process's own CPU time (user + system, all threads; tick-sampled, so coarse). */
  processCpuS: number;
  syscalls: number;
  packetsPerCpuS: number;
  /** Delivered / (core time less the sink's receive): the sender's own cost. */
  senderPacketsPerCpuS: number;
  syscallsPerPacket: number;
  /** Longest run of consecutive packets to one destination at the sink. */
  longestRun: number;
}

const SCRIPT = 'bench/tools/send-load.ts';

/** gso_max_segs of the relay's sink-side veth end: 1 segments on the relay's CPU; 65535 lets GSO buffers cross whole. */
export async function setOutputSegmentation(topo: BenchTopology, nicSegments: boolean): Promise<void> {
  await topo.ip('relay', ['link', 'set', 'out0', 'gso_max_segs', nicSegments ? '65535' : '1']);
}

export async function runSenderTrial(
  ctx: { topo: BenchTopology; sink: Sink; coreClock: CoreClock | undefined },
  spec: { way: string; mode: SenderMode; nicSegments: boolean; repeat: number; count: number; size: number; dests: number; firstPort: number },
): Promise<SenderTrial> {
  const proc = spawnPinned(
    ctx.topo,
    'relay',
    RELAY_CPU,
    process.execPath,
    [
      ...(process.env.SENDER_NODE_ARGS ? process.env.SENDER_NODE_ARGS.split(' ') : []),
      '--import',
      'tsx',
      SCRIPT,
      '--mode',
      spec.mode,
      '--count',
      String(spec.count),
      '--size',
      String(spec.size),
      '--host',
      SINK_ADDR,
      '--first',
      String(spec.firstPort),
      '--dests',
      String(spec.dests),
    ],
    { stdin: 'pipe' },
  );
  try {
    await proc.waitForLine(/"event":"ready"/, { timeoutMs: 30_000, stream: 'stdout' });
    const counter = SendSyscallCounter.open(proc.pid!);
    try {
      const busy = () => (ctx.coreClock ? ctx.coreClock.busyS(RELAY_CPU) : { ...coreBusy(RELAY_CPU), netRxS: NaN });
      await ctx.sink.resetRuns();
      const before = { sink: await ctx.sink.read(), core: busy() };
      proc.writeLine('go');
      await proc.waitForLine(/"event":"done"/, { timeoutMs: 120_000, stream: 'stdout' });
      await new Promise((r) => setTimeout(r, 200)); // drain to the sink
      const end = busy();
      const core = end.busyS - before.core.busyS;
      const sinkRx = end.netRxS - before.core.netRxS;
      const after = await ctx.sink.read();
      const longestRun = await ctx.sink.longestRun();
      const done = proc.jsonLines<{ event: string; sent: number; errors: number; elapsedS: number; processCpuS: number }>().find((j) => j.event === 'done')!;
      const delivered = datagrams(before.sink, after, spec.size);
      const syscalls = counter.count();
      return {
        ...spec,
        sent: done.sent,
        errors: done.errors,
        delivered,
        elapsedS: done.elapsedS,
        coreS: core,
        sinkRxS: sinkRx,
        processCpuS: done.processCpuS,
        syscalls,
        packetsPerCpuS: core > 0 ? delivered / core : NaN,
        senderPacketsPerCpuS: core - sinkRx > 0 ? delivered / (core - sinkRx) : NaN,
        syscallsPerPacket: done.sent > 0 ? syscalls / done.sent : NaN,
        longestRun,
      };
    } finally {
      counter.close();
    }
  } finally {
    proc.endInput();
    await proc.stop(3_000).catch(() => undefined);
  }
}
