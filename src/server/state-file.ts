/**
 * The daemon's state file: what the API changed, so that a restart comes
 * back as it stopped (docs/HTTP-API.md, "State"). Version 1 holds the
 * whole flow list as applied (UDP flows in `flows`, tcp-redirects in
 * `tcpFlows`: a file written before tcp-redirects could change over the
 * API has none, and then they come from the config file), the TPO
 * gateways' run-time changes and the fan-out's settings (`fanout`, with
 * the inputs the API added; absent, it comes from the config file).
 *
 * Written atomically after every successful change: a temporary file in
 * the same directory, written and fsynced, renamed over the old one, and
 * the directory fsynced — a crash or power cut leaves the old file or the
 * new one, never half of either. Read once at start, validated like a
 * config (the same flow schema), bounded like every file a user names.
 */
import { open, rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { FileRefusedError, readRegularFile } from '../fs/regular-file.js';
import { MAX_CONFIG_BYTES, nestingProblem } from '../policy/config.js';
import { flowPolicySchema } from '../policy/schema.js';
import { tcpRedirectSchema, type TcpRedirectPolicy } from '../policy/tcp-redirect.js';
import { describeIssue } from '../policy/validate.js';
import { PolicyValidationError, type FlowPolicy } from '../index.js';
import { serveFanoutSchema, type ServeFanoutConfig } from '../policy/serve-config.js';

export const STATE_VERSION = 1;

/** One gateway's changes made through the API, replayed on its config at start. */
export interface TpoRuntimeState {
  /** Peers added (as in the TPO config's `peers`), by name; a name also in the config replaces it. */
  readonly peers: readonly Record<string, unknown>[];
  /** Names of the config's peers removed. */
  readonly removedPeers: readonly string[];
  /** Table entries added (as in the TPO config's `table`). */
  readonly table: readonly Record<string, unknown>[];
  /** Names of the config's table entries removed. */
  readonly removedTable: readonly string[];
}

export interface ServiceState {
  readonly version: typeof STATE_VERSION;
  /** ISO time of the write. */
  readonly writtenAt: string;
  /** Every flow, as the policies that were applied (named). */
  readonly flows: readonly FlowPolicy[];
  /** Every tcp-redirect, as applied; absent in files of earlier versions. */
  readonly tcpFlows?: readonly TcpRedirectPolicy[];
  /** By gateway name. */
  readonly tpo: Readonly<Record<string, TpoRuntimeState>>;
  /** The fan-out as it ran (inputs added or removed over the API); absent without one, and in files of earlier versions. */
  readonly fanout?: ServeFanoutConfig;
}

const tpoStateSchema = z.strictObject({
  peers: z.array(z.record(z.string(), z.unknown())).default([]),
  removedPeers: z.array(z.string()).default([]),
  table: z.array(z.record(z.string(), z.unknown())).default([]),
  removedTable: z.array(z.string()).default([]),
});

const stateSchema = z.strictObject({
  version: z.literal(STATE_VERSION, { error: `this sluice reads state files of version ${STATE_VERSION}` }),
  writtenAt: z.string(),
  flows: z.array(flowPolicySchema),
  tcpFlows: z.array(tcpRedirectSchema).optional(),
  tpo: z.record(z.string(), tpoStateSchema).default({}),
  fanout: serveFanoutSchema.optional(),
});

/**
 * Validates a parsed state document. Flows are returned as written (each
 * checked by the flow schema; Sluice.apply checks them again, with the
 * checks across flows).
 */
export function parseState(value: unknown, source = 'state file'): ServiceState {
  const deep = nestingProblem(value);
  if (deep) throw new PolicyValidationError([{ path: '', message: deep }], `invalid ${source}`);
  const r = stateSchema.safeParse(value);
  if (!r.success)
    throw new PolicyValidationError(
      r.error.issues.map((iss) => describeIssue(iss, value)),
      `invalid ${source}`,
    );
  const written = value as { flows: FlowPolicy[]; tcpFlows?: TcpRedirectPolicy[] };
  const { tcpFlows: _validated, ...rest } = r.data;
  return { ...rest, version: STATE_VERSION, flows: written.flows, ...(written.tcpFlows !== undefined ? { tcpFlows: written.tcpFlows } : {}) };
}

/** Reads the state file; undefined when there is none. Throws PolicyValidationError for a file that cannot be used. */
export function readStateFile(path: string): ServiceState | undefined {
  let data: Buffer;
  try {
    data = readRegularFile(path, { maxBytes: MAX_CONFIG_BYTES }).data;
  } catch (err) {
    if (err instanceof FileRefusedError && err.reason === 'ENOENT') return undefined;
    if (err instanceof FileRefusedError) throw new PolicyValidationError([{ path: '', message: err.message }], 'invalid state file');
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new PolicyValidationError([{ path: '', message: `${path}: not JSON: ${(err as Error).message}` }], 'invalid state file');
  }
  return parseState(value, `state file ${path}`);
}

/** Writes `state` to `path` atomically (see the file comment). Resolves once it is on disk. */
export async function writeStateFile(path: string, state: Omit<ServiceState, 'version' | 'writtenAt'>, now = new Date()): Promise<ServiceState> {
  const full: ServiceState = {
    version: STATE_VERSION,
    writtenAt: now.toISOString(),
    flows: state.flows,
    ...(state.tcpFlows !== undefined ? { tcpFlows: state.tcpFlows } : {}),
    tpo: state.tpo,
    ...(state.fanout ? { fanout: state.fanout } : {}),
  };
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(full, null, 2)}\n`);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  // The rename is durable once the directory's entry is.
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  return full;
}
