/**
 * Error hierarchy shared by every layer. Callers branch on `code` (stable,
 * `SLUICE_ERR_*`) or `instanceof`, never on message text.
 */
export class SluiceError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SluiceError';
    this.code = code;
  }
}

/** One problem found in a policy or config: where (dotted path) and why. */
export interface PolicyIssue {
  /** Field path, e.g. `flows[1].to[0]`; empty for the whole document. */
  path: string;
  message: string;
}

/** A policy, config file or CLI argument was rejected at the boundary. */
export class PolicyValidationError extends SluiceError {
  readonly issues: readonly PolicyIssue[];
  constructor(issues: readonly PolicyIssue[], prefix = 'invalid policy') {
    super('SLUICE_ERR_INVALID_POLICY', `${prefix}: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`);
    this.name = 'PolicyValidationError';
    this.issues = issues;
  }
}

/** A bad argument to a library call that is not a policy (wrong type, unknown id). */
export class InvalidArgumentError extends SluiceError {
  constructor(message: string) {
    super('SLUICE_ERR_INVALID_ARGUMENT', message);
    this.name = 'InvalidArgumentError';
  }
}

/** A method was called on a Sluice instance or flow that is closed or removed. */
export class ClosedError extends SluiceError {
  constructor(what: string) {
    super('SLUICE_ERR_CLOSED', `${what} is closed`);
    this.name = 'ClosedError';
  }
}

/** The requested tier or policy type cannot run here; `reason` says why. */
export class NotSupportedError extends SluiceError {
  readonly reason: string;
  constructor(message: string, reason: string) {
    super('SLUICE_ERR_NOT_SUPPORTED', `${message}: ${reason}`);
    this.name = 'NotSupportedError';
    this.reason = reason;
  }
}

/** Two flows claim the same resource (e.g. the same listen address). */
export class ConflictError extends SluiceError {
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
export class EngineFailedError extends SluiceError {
  readonly engine: string;
  constructor(engine: string, how: string, options?: { cause?: unknown }) {
    super('SLUICE_ERR_ENGINE_FAILED', `${engine} stopped: ${how}`, options);
    this.name = 'EngineFailedError';
    this.engine = engine;
  }
}

/**
 * A call into the operating system failed. `op` names the call (bind,
 * sendmmsg, bpf(BPF_MAP_CREATE), ...) and `errno` its symbolic error.
 */
export class SyscallError extends SluiceError {
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
