/**
 * The policy table: the control plane's record of which flows run, with
 * their validated specs and compiled plans. It is the only caller of the
 * DataPlane, and it serializes changes so that concurrent apply/update/remove
 * calls take effect one at a time, in call order.
 */
import type { DataPlane } from '../dataplane/types.js';
import { compileFlow, type FlowPlan } from '../policy/compile.js';
import { endpointKey, formatEndpoint, isWildcard, type Endpoint } from '../policy/endpoint.js';
import type { FlowPolicy, FlowPolicySpec } from '../policy/schema.js';
import { parseFlowPolicy } from '../policy/validate.js';
import type { FlowStats } from '../stats/counters.js';
import { ConflictError, InvalidArgumentError, PolicyValidationError } from '../errors.js';

export interface FlowEntry {
  readonly id: string;
  /** What the caller last gave us, merged: patches apply to this. */
  readonly input: Readonly<Record<string, unknown>>;
  readonly spec: FlowPolicySpec;
  readonly plan: FlowPlan;
  /** Listen address as bound (port 0 replaced). */
  readonly listen: Endpoint;
}

export class PolicyTable {
  readonly #plane: DataPlane;
  readonly #entries = new Map<string, FlowEntry>();
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 1;

  constructor(plane: DataPlane) {
    this.#plane = plane;
  }

  /** The data plane this table drives (for counter reads). */
  get plane(): DataPlane {
    return this.#plane;
  }

  get(id: string): FlowEntry | undefined {
    return this.#entries.get(id);
  }

  entries(): FlowEntry[] {
    return [...this.#entries.values()];
  }

  /** Validates, compiles and starts a flow. */
  add(input: FlowPolicy): Promise<FlowEntry> {
    return this.#serialize(async () => {
      const spec = parseFlowPolicy(input);
      const id = `f${this.#nextId++}`;
      const name = spec.name ?? `${spec.type}-${id.slice(1)}`;
      if (this.entries().some((e) => e.plan.name === name)) {
        throw new ConflictError(`a flow named '${name}' already runs`);
      }
      this.#checkListen(spec.listen);
      const plan = compileFlow(spec, name);
      const { listen } = await this.#plane.addFlow(id, plan);
      const entry: FlowEntry = { id, input: { ...(input as object) }, spec, plan, listen };
      this.#entries.set(id, entry);
      return entry;
    });
  }

  /**
   * Merges `patch` into the flow's policy and applies the result. The type,
   * name and listen address are fixed for the life of a flow.
   */
  update(id: string, patch: Partial<FlowPolicy> | ((current: Readonly<Record<string, unknown>>) => Record<string, unknown>)): Promise<FlowEntry> {
    return this.#serialize(async () => {
      const entry = this.#entries.get(id);
      if (!entry) throw new InvalidArgumentError(`no flow with id '${id}'`);
      const merged = typeof patch === 'function' ? patch(entry.input) : { ...entry.input, ...(patch as object) };
      const spec = parseFlowPolicy(merged);
      const fixed: string[] = [];
      if (spec.type !== entry.spec.type) fixed.push('type');
      if ((spec.name ?? entry.plan.name) !== entry.plan.name) fixed.push('name');
      if (endpointKey(spec.listen) !== endpointKey(entry.spec.listen)) fixed.push('listen');
      if (fixed.length) {
        throw new PolicyValidationError(
          fixed.map((f) => ({ path: f, message: 'cannot change on a running flow (remove it and apply a new one)' })),
        );
      }
      const plan = compileFlow(spec, entry.plan.name);
      await this.#plane.updateFlow(id, plan);
      const next: FlowEntry = { ...entry, input: merged, spec, plan };
      this.#entries.set(id, next);
      return next;
    });
  }

  /** Stops a flow; resolves with its final counters (undefined if unknown). */
  remove(id: string): Promise<FlowStats | undefined> {
    return this.#serialize(async () => {
      if (!this.#entries.delete(id)) return undefined;
      return this.#plane.removeFlow(id);
    });
  }

  /** Removes every flow, returning their final counters; the table stays usable. */
  clear(): Promise<FlowStats[]> {
    return this.#serialize(async () => {
      const ids = [...this.#entries.keys()];
      this.#entries.clear();
      const stats = await Promise.all(ids.map((id) => this.#plane.removeFlow(id)));
      return stats.filter((s): s is FlowStats => s !== undefined);
    });
  }

  /**
   * Two flows of one instance cannot listen on overlapping addresses: same
   * port and same address, or a wildcard on either side. Caught here with a
   * message naming both flows, rather than as EADDRINUSE from bind.
   */
  #checkListen(listen: Endpoint): void {
    if (listen.port === 0) return;
    for (const e of this.#entries.values()) {
      if (e.listen.port !== listen.port) continue;
      const sameFamily = e.listen.family === listen.family;
      const overlap =
        (sameFamily && (endpointKey(e.listen) === endpointKey(listen) || isWildcard(e.listen) || isWildcard(listen))) ||
        // A `::` socket is dual-stack: it also takes IPv4 datagrams on its port.
        (!sameFamily && ((e.listen.family === 6 && isWildcard(e.listen)) || (listen.family === 6 && isWildcard(listen))));
      if (overlap) {
        throw new ConflictError(`listen ${formatEndpoint(listen)} overlaps flow '${e.plan.name}' on ${formatEndpoint(e.listen)}`);
      }
    }
  }

  #serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
