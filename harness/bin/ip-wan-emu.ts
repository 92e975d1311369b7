/**
 * Runner of the IP-level WAN emulator (harness/wan/ip-emulator.ts), started in
 * the "wan" namespace of a topology (harness/wan/topology.ts):
 *
 *   node --import tsx harness/bin/ip-wan-emu.ts --a-if wa --b-if wb \
 *     --delay-ms 50 --rate-mbit 50 --loss 0.01 [--seed 1] \
 *     [--a-to-b '{"loss":0.03}'] [--b-to-a '{...}']
 *
 * --delay-ms/--rate-mbit/--loss/--queue-bytes/--burst apply to both
 * directions (delay is one-way); --a-to-b/--b-to-a are JSON ImpairmentParams
 * merged over them per direction. Prints one JSON line per event on stdout:
 * {"event":"ready"}, then {"event":"stats",...} for every "stats" line on
 * stdin, and {"event":"final",...} when stopped (SIGTERM, SIGINT or end of
 * stdin), then exits 0. A start-up failure prints the error and exits 1.
 */
import { Command } from 'commander';
import { fstatSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { IpWanEmulator, type ImpairmentParams } from '../wan/ip-emulator.js';

const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a number >= 0: ${v}`);
  return n;
};

const o = new Command('ip-wan-emu')
  .requiredOption('--a-if <name>', 'interface towards site A')
  .requiredOption('--b-if <name>', 'interface towards site B')
  .option('--delay-ms <ms>', 'one-way delay, both directions', num, 0)
  .option('--rate-mbit <mbit>', 'bottleneck rate of IP packets, both directions (0: unlimited)', num, 0)
  .option('--queue-bytes <n>', 'bottleneck queue (default 100 ms at the rate)', num)
  .option('--loss <p>', 'random loss probability, both directions', num, 0)
  .option('--burst <json>', 'Gilbert-Elliott burst loss, both directions: {"pGoodToBad":..,"pBadToGood":..}')
  .option('--a-to-b <json>', 'ImpairmentParams merged over the common ones for A→B')
  .option('--b-to-a <json>', 'the same for B→A')
  .option('--seed <n>', 'PRNG seed', num, 1)
  .option('--slots <n>', 'frames held per direction', num)
  .parse()
  .opts<{
    aIf: string;
    bIf: string;
    delayMs: number;
    rateMbit: number;
    queueBytes?: number;
    loss: number;
    burst?: string;
    aToB?: string;
    bToA?: string;
    seed: number;
    slots?: number;
  }>();

const common: Partial<ImpairmentParams> = {
  delayMs: o.delayMs,
  rateBps: o.rateMbit * 1e6,
  loss: o.loss,
  ...(o.queueBytes !== undefined ? { queueBytes: o.queueBytes } : {}),
  ...(o.burst ? { burst: JSON.parse(o.burst) as ImpairmentParams['burst'] } : {}),
};
const print = (obj: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(obj)}\n`);

let emu: IpWanEmulator;
try {
  emu = await IpWanEmulator.start({
    aIf: o.aIf,
    bIf: o.bIf,
    aToB: { ...common, ...(o.aToB ? (JSON.parse(o.aToB) as Partial<ImpairmentParams>) : {}) },
    bToA: { ...common, ...(o.bToA ? (JSON.parse(o.bToA) as Partial<ImpairmentParams>) : {}) },
    seed: o.seed,
    ...(o.slots ? { slots: o.slots } : {}),
  });
} catch (err) {
  process.stderr.write(`ip-wan-emu: ${(err as Error).message}\n`);
  process.exit(1);
}
print({ event: 'ready', params: emu.params, scheduling: emu.scheduling });

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const stats = emu.stats();
  await emu.stop();
  print({ event: 'final', ...stats, ...(emu.error ? { error: emu.error.message } : {}) });
  process.exit(0);
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => void stop());
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line.trim() === 'stats') print({ event: 'stats', ...emu.stats(), ...(emu.error ? { error: emu.error.message } : {}) });
});
// Only a pipe's end means "stop": spawned with stdin on /dev/null, the
// emulator would otherwise stop at once.
if (fstatSync(0).isFIFO()) rl.on('close', () => void stop());
