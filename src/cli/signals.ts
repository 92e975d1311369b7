/**
 * The process-wide handlers of the sluice command: the library installs
 * none (issue 17, item 7), so what a signal or the process's exit means is
 * decided here.
 */

/**
 * Resolves with the first SIGINT or SIGTERM (the caller stops cleanly); a
 * second signal exits at once with 128 + its number.
 */
export function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.once(sig, () => process.exit(128 + (sig === 'SIGINT' ? 2 : 15)));
      resolve(sig);
    };
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
  });
}

/**
 * Runs `fn` if the process exits (process.exit, the end of the event loop,
 * an uncaught exception) before the returned function is called, which
 * removes it. `fn` must be synchronous: an 'exit' handler cannot wait.
 */
export function onExit(fn: () => void): () => void {
  const handler = () => fn();
  process.on('exit', handler);
  return () => void process.off('exit', handler);
}
