/**
 * `--tune-host` on `sluice relay`, `run` and `serve`: raises the host's
 * backlog queue (net.core.netdev_max_backlog, src/dataplane/kernel/host-tuning.ts)
 * for the life of the command, says what it changed, and puts the old
 * value back when the command ends: after SIGINT/SIGTERM, a normal end or
 * an error (the process's 'exit' covers an exit nothing else saw). A
 * crash that kills the process (SIGKILL, power) leaves it set: `sluice
 * doctor` says so and `sluice detach` restores it.
 */
import { InvalidArgumentError as CliArgError, Option } from 'commander';
import { parseTuneHost, tuneHost } from '../dataplane/kernel/host-tuning.js';
import { onExit } from './signals.js';

export const tuneHostOption = () =>
  new Option(
    '--tune-host [backlog=N]',
    'raise net.core.netdev_max_backlog (to 10000, or N) while running, for kernel-tier fan-outs to local/veth subscribers; restored on exit (root only)',
  ).argParser((v: string) => {
    try {
      parseTuneHost(v);
      return v;
    } catch (err) {
      throw new CliArgError((err as Error).message);
    }
  });

/**
 * Applies `--tune-host` (undefined: not given) and reports the change
 * through `say`; returns what puts it back (idempotent; reports through `say`).
 * Throws NotSupportedError when not root, InvalidArgumentError on a bad value.
 */
export function applyTuneHost(value: string | true | undefined, say: (line: string) => void): () => void {
  if (value === undefined) return () => undefined;
  const tuning = tuneHost(parseTuneHost(value));
  say(`--tune-host: ${tuning.message}`);
  if (!tuning.changed) return () => undefined;
  const restore = () => {
    const done = tuning.restore();
    if (done) say(`--tune-host: ${done}`);
  };
  const off = onExit(restore);
  return () => {
    off();
    restore();
  };
}
