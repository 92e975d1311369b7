/** The batched-tier options `sluice relay` and `sluice run` share: one definition each, so their help and limits cannot drift apart. */
import { InvalidArgumentError as CliArgError, Option } from 'commander';
import { MAX_STEERED_SOCKETS } from '../sys/reuseport.js';

/** Milliseconds a datagram may be held for batching. */
const MAX_BATCH_HOLD_MS = 1000;

export const batchHoldOption = () =>
  new Option('--batch-hold <ms>', 'batched tier: most time a datagram waits to be sent with others (default 1; 0 = none; at most 1000)').argParser(
    (v: string) => {
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > MAX_BATCH_HOLD_MS) throw new CliArgError(`expected a number from 0 to ${MAX_BATCH_HOLD_MS}`);
      return n;
    },
  );

/** `--workers N|auto` (src/dataplane/batched/workers-plane.ts). */
export const workersOption = () =>
  new Option(
    '--workers <n>',
    "batched tier: worker threads per flow, each source kept on one (SO_REUSEPORT + BPF steering); 'auto' = one per core (default 1)",
  ).argParser((v: string): number | 'auto' => {
    if (v === 'auto') return 'auto';
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > MAX_STEERED_SOCKETS) throw new CliArgError(`expected 'auto' or an integer from 1 to ${MAX_STEERED_SOCKETS}`);
    return n;
  });
