/**
 * Error hierarchy shared by every layer. Callers branch on `code` (stable,
 * `SLUICE_ERR_*`, typed as the SluiceErrorCode union) or `instanceof`,
 * never on message text. Messages and codes are part of the CLI's output:
 * they do not change when a class is added or moved.
 */

/**
 * Every error code Sluice throws. A code is only ever added: callers may
 * switch over it exhaustively for the codes they know.
 */
export type SluiceErrorCode =
  /** PolicyValidationError: a policy, config file or CLI argument was refused, field by field. */
  | 'SLUICE_ERR_INVALID_POLICY'
  /** ConfigError: a TPO config or its interception table was refused. */
  | 'SLUICE_ERR_INVALID_CONFIG'
  /** InvalidArgumentError: a bad argument that is not a policy. */
  | 'SLUICE_ERR_INVALID_ARGUMENT'
  /** ClosedError: the object is closed or removed. */
  | 'SLUICE_ERR_CLOSED'
  /** NotSupportedError: the tier or feature cannot run on this host. */
  | 'SLUICE_ERR_NOT_SUPPORTED'
  /** ConflictError: two flows claim the same name or address. */
  | 'SLUICE_ERR_CONFLICT'
  /** EngineError: an engine (worker thread, eBPF program) refused or failed one request. */
  | 'SLUICE_ERR_ENGINE'
  /** EngineFailedError: an engine stopped on its own; what ran on it stops too. */
  | 'SLUICE_ERR_ENGINE_FAILED'
  /** SyscallError: a system call failed (op and errno say which and why). */
  | 'SLUICE_ERR_SYSCALL'
  /** WireError: a TPO wire structure could not be decoded or encoded. */
  | 'SLUICE_ERR_WIRE'
  /** ControlSocketError: the TPO control socket could not be set up. */
  | 'SLUICE_ERR_CONTROL_SOCKET'
  /** FileRefusedError: a file a user named cannot be read (not regular, too large, outside its folder). */
  | 'SLUICE_ERR_FILE_REFUSED'
  /** ElfError: bpf/sluice.o (or another eBPF object) is damaged or uses what the loader does not support. */
  | 'SLUICE_ERR_BPF_OBJECT'
  /** StoreError: the cluster store (etcd) failed, timed out, or refused a request. */
  | 'SLUICE_ERR_STORE';

/** Every code once, in the order above (docs, exhaustive switches, tests). */
export const SLUICE_ERROR_CODES = Object.keys({
  SLUICE_ERR_INVALID_POLICY: true,
  SLUICE_ERR_INVALID_CONFIG: true,
  SLUICE_ERR_INVALID_ARGUMENT: true,
  SLUICE_ERR_CLOSED: true,
  SLUICE_ERR_NOT_SUPPORTED: true,
  SLUICE_ERR_CONFLICT: true,
  SLUICE_ERR_ENGINE: true,
  SLUICE_ERR_ENGINE_FAILED: true,
  SLUICE_ERR_SYSCALL: true,
  SLUICE_ERR_WIRE: true,
  SLUICE_ERR_CONTROL_SOCKET: true,
  SLUICE_ERR_FILE_REFUSED: true,
  SLUICE_ERR_BPF_OBJECT: true,
  SLUICE_ERR_STORE: true,
} satisfies Record<SluiceErrorCode, true>) as readonly SluiceErrorCode[];

/** Base of every error Sluice throws on purpose; `code` says which kind. */
export class SluiceError<C extends SluiceErrorCode = SluiceErrorCode> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SluiceError';
    this.code = code;
  }
}

/**
 * True when `err` is a SluiceError (with `code`, when given): narrows for
 * callers that handle one kind, e.g. `isSluiceError(e, 'SLUICE_ERR_CLOSED')`.
 */
export function isSluiceError<C extends SluiceErrorCode>(err: unknown, code?: C): err is SluiceError<C> {
  return err instanceof SluiceError && (code === undefined || err.code === code);
}

/** One problem found in a policy or config: where (dotted path) and why. */
export interface PolicyIssue {
  /** Field path, e.g. `flows[1].to[0]`; empty for the whole document. */
  path: string;
  message: string;
}

/** A policy, config file or CLI argument was rejected at the boundary. */
export class PolicyValidationError extends SluiceError<'SLUICE_ERR_INVALID_POLICY'> {
  readonly issues: readonly PolicyIssue[];
  constructor(issues: readonly PolicyIssue[], prefix = 'invalid policy') {
    super('SLUICE_ERR_INVALID_POLICY', `${prefix}: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`);
    this.name = 'PolicyValidationError';
    this.issues = issues;
  }
}

/** A bad argument to a library call that is not a policy (wrong type, unknown id). */
export class InvalidArgumentError extends SluiceError<'SLUICE_ERR_INVALID_ARGUMENT'> {
  constructor(message: string) {
    super('SLUICE_ERR_INVALID_ARGUMENT', message);
    this.name = 'InvalidArgumentError';
  }
}

/** A method was called on a Sluice instance or flow that is closed or removed. */
export class ClosedError extends SluiceError<'SLUICE_ERR_CLOSED'> {
  constructor(what: string) {
    super('SLUICE_ERR_CLOSED', `${what} is closed`);
    this.name = 'ClosedError';
  }
}

/** The requested tier or policy type cannot run here; `reason` says why. */
export class NotSupportedError extends SluiceError<'SLUICE_ERR_NOT_SUPPORTED'> {
  readonly reason: string;
  constructor(message: string, reason: string) {
    super('SLUICE_ERR_NOT_SUPPORTED', `${message}: ${reason}`);
    this.name = 'NotSupportedError';
    this.reason = reason;
  }
}

/** Two flows claim the same resource (e.g. the same listen address). */
export class ConflictError extends SluiceError<'SLUICE_ERR_CONFLICT'> {
  constructor(message: string) {
    super('SLUICE_ERR_CONFLICT', message);
    this.name = 'ConflictError';
  }
}

/**
 * An engine a data plane or sender depends on (a worker thread) stopped on
 * its own: the flows it carried move no packets any more. `engine` names
 * it; the message says how it stopped. Emitted by Sluice as
 * 'engineFailed'; later calls on that instance reject with it.
 */
export class EngineFailedError extends SluiceError<'SLUICE_ERR_ENGINE_FAILED'> {
  readonly engine: string;
  constructor(engine: string, how: string, options?: { cause?: unknown }) {
    super('SLUICE_ERR_ENGINE_FAILED', `${engine} stopped: ${how}`, options);
    this.name = 'EngineFailedError';
    this.engine = engine;
  }
}

/**
 * An engine refused or failed one request (a flow it could not add, a
 * send job it could not run, an eBPF object it could not load), while it
 * keeps running for everything else. `engine` names it; the message is the
 * engine's own. Contrast EngineFailedError: the engine itself stopped.
 */
export class EngineError extends SluiceError<'SLUICE_ERR_ENGINE'> {
  readonly engine: string;
  constructor(engine: string, message: string, options?: { cause?: unknown }) {
    super('SLUICE_ERR_ENGINE', message, options);
    this.name = 'EngineError';
    this.engine = engine;
  }
}

/**
 * A configuration was refused (today: a TPO config file and its
 * interception table). `issues` lists every problem found, one line each;
 * `source` names the file (or text) they were found in, when known.
 */
export class ConfigError extends SluiceError<'SLUICE_ERR_INVALID_CONFIG'> {
  readonly issues: readonly string[];
  readonly source: string | undefined;
  constructor(message: string, detail: { issues?: readonly string[]; source?: string } = {}, options?: { cause?: unknown }) {
    super('SLUICE_ERR_INVALID_CONFIG', message, options);
    this.name = 'ConfigError';
    this.issues = detail.issues ?? [message];
    this.source = detail.source;
  }
}

/**
 * A call into the operating system failed. `op` names the call (bind,
 * sendmmsg, bpf(BPF_MAP_CREATE), ...) and `errno` its symbolic error.
 */
export class SyscallError extends SluiceError<'SLUICE_ERR_SYSCALL'> {
  readonly op: string;
  readonly errno: string;
  /** What the call was about (an address, a map name), if known. */
  readonly detail: string | undefined;
  constructor(op: string, errno: string, detail?: string, options?: { cause?: unknown }) {
    super('SLUICE_ERR_SYSCALL', `${op} failed: ${errno}${detail ? ` (${detail})` : ''}`, options);
    this.name = 'SyscallError';
    this.op = op;
    this.errno = errno;
    this.detail = detail;
  }
}

/** Wraps a Node system error (from dgram, net, fs) as a SyscallError. */
export function fromNodeError(op: string, err: unknown, detail?: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as NodeJS.ErrnoException;
  return new SyscallError(op, e?.code ?? 'EUNKNOWN', detail, { cause: err });
}
