/**
 * The envelopes every Sluice worker thread speaks with the thread that
 * started it (channel.ts on the application side, port.ts in the worker).
 * Everything here is structured-clone data.
 *
 * A request is the protocol's own message with an `id` added:
 * `{ id, op, ...body }`. The discriminant `op` stays at the top level on
 * purpose: harness/process/worker-killer.ts recognises an engine's worker
 * by the first request it is sent.
 *
 * Errors cross as ErrorInfo and are rebuilt as the same class on the other
 * side: a structured clone of a SluiceError arrives as a plain Error with
 * its own fields lost.
 */
import {
  ClosedError,
  ConflictError,
  EngineError,
  InvalidArgumentError,
  NotSupportedError,
  SluiceError,
  SyscallError,
  type SluiceErrorCode,
} from '../errors.js';

/**
 * A protocol's requests, as `R extends RequestMap<R>`: per op, the body
 * sent (without `id` and `op`) and the result its reply carries. (Written
 * over R so that an interface qualifies, not only a type alias.)
 */
export type RequestMap<R> = { readonly [Op in keyof R]: { readonly request: object; readonly result: unknown } };
/** A protocol's notifications, as `N extends NotificationMap<N>`: per event, the data it carries. */
export type NotificationMap<N> = { readonly [E in keyof N]: unknown };

export interface ErrorInfo {
  readonly name: string;
  readonly message: string;
  /** SluiceError's code, when the error was one. */
  readonly code?: SluiceErrorCode;
  /** SyscallError: the call, its errno name and what it was about. */
  readonly op?: string;
  readonly errno?: string;
  readonly detail?: string;
  /** NotSupportedError: why. */
  readonly reason?: string;
}

export type RequestEnvelope<Op extends string = string> = { readonly id: number; readonly op: Op } & Record<string, unknown>;

export type WorkerMessage =
  | { readonly kind: 'ready'; readonly info?: unknown }
  | { readonly kind: 'reply'; readonly id: number; readonly result?: unknown; readonly error?: ErrorInfo }
  | { readonly kind: 'notify'; readonly event: string; readonly data: unknown }
  /** A failure no request waits for; a fatal one (or any before 'ready') ends the channel. */
  | { readonly kind: 'fault'; readonly error: ErrorInfo; readonly fatal: boolean; readonly scope?: string };

/** Worker side: what of `e` crosses to the application thread. */
export function toErrorInfo(e: unknown): ErrorInfo {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const info: { -readonly [K in keyof ErrorInfo]: ErrorInfo[K] } = { name: e.name, message: e.message };
  if (e instanceof SluiceError) info.code = e.code;
  if (e instanceof SyscallError) {
    info.op = e.op;
    info.errno = e.errno;
    if (e.detail) info.detail = e.detail;
  }
  if (e instanceof NotSupportedError) info.reason = e.reason;
  return info;
}

/**
 * SluiceError subclasses rebuilt by name, whole: every field they have
 * crosses in ErrorInfo. (A PolicyValidationError's issues would not: it
 * comes back as a SluiceError with its code and message.)
 */
const REBUILT: Record<string, new (...args: never[]) => SluiceError> = {
  SluiceError,
  ClosedError,
  ConflictError,
  InvalidArgumentError,
  NotSupportedError,
};

/**
 * Application side: the error `info` describes, as its own class where the
 * worker's was a SluiceError. A SyscallError is rebuilt from its fields
 * (same op, errno, detail and message); a SluiceError of a class in
 * REBUILT keeps its class, code and message, any other keeps its code and
 * message; anything else becomes a SluiceError with code SLUICE_ERR_ENGINE
 * and the worker's message, after `context` if given ("batched port
 * receive thread: …").
 */
export function fromErrorInfo(info: ErrorInfo, context?: string): SluiceError {
  if (info.op && info.errno) return new SyscallError(info.op, info.errno, info.detail);
  if (!info.code) return new EngineError(context ?? 'worker thread', context ? `${context}: ${info.message}` : info.message);
  const cls = REBUILT[info.name];
  if (!cls) return new SluiceError(info.code, info.message);
  // The class's own constructor builds its message from its arguments;
  // SluiceError's takes code and message as they are, the prototype is cls's.
  const e = Reflect.construct(SluiceError, [info.code, info.message], cls) as SluiceError;
  e.name = info.name;
  if (info.reason !== undefined) Object.defineProperty(e, 'reason', { value: info.reason, enumerable: true });
  return e;
}
