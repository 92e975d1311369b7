/**
 * The sender bench (issue #5, part a): COUNT datagrams sent as fast as
 * possible from the relay namespace (pinned to the relay's CPU) to the
 * sink, three ways side by side: one aggregate through Sluice's batched
 * engine, one node:dgram send per datagram, one sendto(2) per datagram.
 * Reported per way: packets per CPU-second (delivered at the sink / busy
 * time of the sender's core, from the exact core clock, so the kernel's
 * share of sending counts too) and send system calls per packet (counted
 * exactly for that process by an eBPF program on sys_enter).
 */
import type { BenchTopology } from './topology.js';
import { RELAY_CPU, SINK_ADDR, spawnPinned } from './topology.js';
import { datagrams, type Sink } from './sink.js';
import type { CoreClock } from './irq-clock.js';
import { SendSyscallCounter } from './syscall-count.js';
import { coreBusy } from './cpu.js';

export const SENDER_MODES = ['aggregate', 'dgram', 'sendto'] as const;
export type SenderMode = (typeof SENDER_MODES)[number];

export interface SenderTrial {
  mode: SenderMode;
  repeat: number;
  count: number;
  size: number;
  dests: number;
  sent: number;
  errors: number;
  delivered: number;
  elapsedS: number;
  coreS: number;
  /** The sending process's own CPU time (user + system, all threads; tick-sampled, so coarse). */
  processCpuS: number;
  syscalls: number;
  packetsPerCpuS: number;
  syscallsPerPacket: number;
}

const SCRIPT = 'bench/tools/send-load.ts';

export async function runSenderTrial(
  ctx: { topo: BenchTopology; sink: Sink; coreClock: CoreClock | undefined },
  spec: { mode: SenderMode; repeat: number; count: number; size: number; dests: number; firstPort: number },
): Promise<SenderTrial> {
  const proc = spawnPinned(ctx.topo, 'relay', RELAY_CPU, process.execPath, [
    ...(process.env.SENDER_NODE_ARGS ? process.env.SENDER_NODE_ARGS.split(' ') : []), '--import', 'tsx', SCRIPT,
    '--mode', spec.mode, '--count', String(spec.count), '--size', String(spec.size),
    '--host', SINK_ADDR, '--first', String(spec.firstPort), '--dests', String(spec.dests),
  ], { stdin: 'pipe' });
  try {
    await proc.waitForLine(/"event":"ready"/, { timeoutMs: 30_000, stream: 'stdout' });
    const counter = SendSyscallCounter.open(proc.pid!);
    try {
      const busy = () => (ctx.coreClock ? ctx.coreClock.busyS(RELAY_CPU).busyS : coreBusy(RELAY_CPU).busyS);
      const before = { sink: await ctx.sink.read(), core: busy() };
      proc.writeLine('go');
      await proc.waitForLine(/"event":"done"/, { timeoutMs: 120_000, stream: 'stdout' });
      await new Promise((r) => setTimeout(r, 200)); // drain to the sink
      const core = busy() - before.core;
      const after = await ctx.sink.read();
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
        processCpuS: done.processCpuS,
        syscalls,
        packetsPerCpuS: core > 0 ? delivered / core : NaN,
        syscallsPerPacket: done.sent > 0 ? syscalls / done.sent : NaN,
      };
    } finally {
      counter.close();
    }
  } finally {
    proc.endInput();
    await proc.stop(3_000).catch(() => undefined);
  }
}
