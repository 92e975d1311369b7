/**
 * TypedEmitter: node:events' EventEmitter with its events typed by a map
 * (`{ name: [arg, ...] }`), whose emit() never lets a listener's exception
 * out. The objects that emit (Sluice, Flow, their observers) do so from
 * engine callbacks, timers and the middle of close(): a listener that
 * throws must not leave them half-closed or kill an engine's message
 * handler. Such an exception (or the rejection of an async listener) is
 * reported as 'listenererror' (event name, error) on the same emitter when
 * someone listens there, else as a process warning
 * (code SLUICE_LISTENER_ERROR); the remaining listeners still run.
 *
 * It stays a real EventEmitter, so `events.once(emitter, name)`,
 * listenerCount() and removeAllListeners() work as usual.
 */
import { EventEmitter } from 'node:events';

/** Events every TypedEmitter has besides its own. */
export interface ListenerErrorEvents {
  /** A listener of `event` threw (or its promise rejected) with `error`. */
  listenererror: [event: string, error: unknown];
}

/** An event map: event name → the listener's argument list. */
export type EventMap<E> = Record<keyof E, unknown[]>;

/** Process-warning codes Sluice emits; a warning is never thrown. */
export type SluiceWarningCode =
  'SLUICE_LISTENER_ERROR' | 'SLUICE_TPO_FAULT' | 'SLUICE_DATAGRAM_HANDLER' | 'SLUICE_DATAGRAM_PORT' | 'SLUICE_TPO_HANDLER' | 'SLUICE_TPO_SEAL';

/** The map a TypedEmitter<E> emits: its own events and 'listenererror'. */
export type WithListenerError<E> = E & ListenerErrorEvents;

type Listener<A> = A extends unknown[] ? (...args: A) => void : never;

/**
 * The typed face of the class below. Node's generic EventEmitter<T> types
 * `emit` in a way no subclass can override with a typed emit of its own,
 * so the class extends the untyped EventEmitter and this interface, merged
 * into it, gives the inherited methods their types (it replaces their
 * untyped signatures; it adds no method).
 */
export interface TypedEmitter<E extends EventMap<E>> {
  on<K extends keyof WithListenerError<E> & string>(event: K, listener: Listener<WithListenerError<E>[K]>): this;
  once<K extends keyof WithListenerError<E> & string>(event: K, listener: Listener<WithListenerError<E>[K]>): this;
  off<K extends keyof WithListenerError<E> & string>(event: K, listener: Listener<WithListenerError<E>[K]>): this;
  addListener<K extends keyof WithListenerError<E> & string>(event: K, listener: Listener<WithListenerError<E>[K]>): this;
  prependListener<K extends keyof WithListenerError<E> & string>(event: K, listener: Listener<WithListenerError<E>[K]>): this;
  prependOnceListener<K extends keyof WithListenerError<E> & string>(event: K, listener: Listener<WithListenerError<E>[K]>): this;
  removeListener<K extends keyof WithListenerError<E> & string>(event: K, listener: Listener<WithListenerError<E>[K]>): this;
  listenerCount<K extends keyof WithListenerError<E> & string>(event: K): number;
}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- the interface above only types the inherited methods
export class TypedEmitter<E extends EventMap<E>> extends EventEmitter {
  constructor() {
    super();
    // Every flow of a Sluice may listen to it: more than ten listeners is normal, not a leak.
    this.setMaxListeners(0);
  }

  /**
   * Calls the listeners of `event` in order with `args`; an exception in
   * one is reported (see the file header) and the next one still runs.
   * Returns whether there were listeners. 'error' keeps node's meaning
   * (thrown when nobody listens), so it is passed through untouched.
   */
  override emit<K extends keyof WithListenerError<E> & string>(event: K, ...args: WithListenerError<E>[K]): boolean {
    if (event === 'error') return super.emit(event, ...args);
    // Raw listeners: a once() wrapper removes itself when called, as in node's emit.
    const listeners = this.rawListeners(event) as ((...a: unknown[]) => unknown)[];
    for (const listener of listeners) {
      try {
        const r = listener.apply(this, args);
        if (r instanceof Promise) r.catch((err: unknown) => this.#listenerError(event, err));
      } catch (err) {
        this.#listenerError(event, err);
      }
    }
    return listeners.length > 0;
  }

  #listenerError(event: string | symbol, error: unknown): void {
    const name = String(event);
    if (name !== 'listenererror' && this.listenerCount('listenererror') > 0) {
      // E may not mention 'listenererror' itself; every TypedEmitter has it.
      (this as unknown as TypedEmitter<ListenerErrorEvents>).emit('listenererror', name, error);
      return;
    }
    const why = error instanceof Error ? error.message : String(error);
    process.emitWarning(`a listener of '${name}' threw: ${why}`, { code: 'SLUICE_LISTENER_ERROR' satisfies SluiceWarningCode });
  }
}
