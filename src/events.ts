/**
 * SafeEmitter: a typed EventEmitter whose safeEmit() keeps a throwing
 * listener away from the code that emitted. The library emits from socket
 * callbacks, timers and engine loops; a listener's exception thrown into
 * one of those would break that loop (or end the process as an uncaught
 * exception). safeEmit() calls each listener in turn, catches what it
 * throws and reports it as 'listenererror' (event name, error), or as a
 * process warning when nobody listens for that; the other listeners still
 * run. Imports nothing of Sluice (a leaf, like errors.ts).
 */
import { EventEmitter } from 'node:events';

/** Every event map of a SafeEmitter has 'listenererror'. */
interface ListenerErrorEvent {
  listenererror: [event: string, error: unknown];
}

export class SafeEmitter<E extends Record<keyof E, unknown[]> & ListenerErrorEvent> extends EventEmitter<E> {
  /**
   * emit() that catches a throwing listener: the error goes to
   * 'listenererror' (or a process warning), never up into the caller.
   * Returns whether the event had listeners.
   */
  safeEmit<K extends keyof E & string>(event: K, ...args: E[K]): boolean {
    return this.#emitEach(event, args);
  }

  #emitEach(event: string, args: readonly unknown[]): boolean {
    // The untyped view: the listeners are called here, one by one, not through emit().
    const untyped = this as unknown as EventEmitter;
    // rawListeners: calling a once() wrapper removes it, as emit() would.
    const listeners = untyped.rawListeners(event) as ((...a: unknown[]) => unknown)[];
    for (const listener of listeners) {
      try {
        listener.apply(this, args as unknown[]);
      } catch (err) {
        if (event !== 'listenererror' && untyped.listenerCount('listenererror') > 0) this.#emitEach('listenererror', [event, err]);
        else process.emitWarning(`a '${event}' listener threw: ${err instanceof Error ? err.message : String(err)}`, { code: 'SLUICE_LISTENER_ERROR' });
      }
    }
    return listeners.length > 0;
  }
}
