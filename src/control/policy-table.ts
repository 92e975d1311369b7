/**
 * The policy table: the control plane's record of which flows run, with
 * their validated specs and compiled plans. It is the only caller of the
 * DataPlane, and it serializes changes so that concurrent apply/update/remove
 * calls take effect one at a time, in call order.
 */
import type { DataPlane, JoinPoint, JoinResult } from '../dataplane/common/types.js';
import { compileFlow, type FlowPlan } from '../policy/compile.js';
import { endpointKey, formatEndpoint, type Endpoint } from '../wire/endpoint.js';
import { flowSetIssues, type FlowInSet } from '../policy/flow-set.js';
import { localHostAddresses } from './host-addresses.js';
import type { FlowPolicy, FlowPolicySpec } from '../policy/schema.js';
import { parseFlowPolicy } from '../policy/validate.js';
import type { FlowStats } from '../dataplane/common/counters.js';
import { ConflictError, InvalidArgumentError, PolicyValidationError } from '../errors.js';

export interface RunningFlowRecord {
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
  readonly #entries = new Map<string, RunningFlowRecord>();
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 1;

  constructor(plane: DataPlane) {
    this.#plane = plane;
  }

  /** The data plane this table drives (for counter reads). */
  get plane(): DataPlane {
    return this.#plane;
  }

  get(id: string): RunningFlowRecord | undefined {
    return this.#entries.get(id);
  }

  entries(): RunningFlowRecord[] {
    return [...this.#entries.values()];
  }

  /** Validates, compiles and starts a flow. */
  add(input: FlowPolicy): Promise<RunningFlowRecord> {
    return this.#serialize(async () => {
      const spec = parseFlowPolicy(input);
      const id = `f${this.#nextId++}`;
      const name = spec.name ?? `${spec.type}-${id.slice(1)}`;
      this.#checkSet([...this.#entries.values()], { name, where: '', spec });
      const plan = compileFlow(spec, name);
      const { listen } = await this.#plane.addFlow(id, plan);
      const entry: RunningFlowRecord = { id, input: { ...(input as object) }, spec, plan, listen };
      if (spec.listen.port === 0) {
        // Only now is the port known: a running flow's subscriber may be it.
        try {
          this.#checkSet([...this.#entries.values()], { name, where: '', spec, listen });
        } catch (err) {
          await this.#plane.removeFlow(id);
          throw err;
        }
      }
      this.#entries.set(id, entry);
      return entry;
    });
  }

  /**
   * Merges `patch` into the flow's policy and applies the result. The type,
   * name and listen address are fixed for the life of a flow.
   */
  update(id: string, patch: Partial<FlowPolicy> | ((current: Readonly<Record<string, unknown>>) => Record<string, unknown>)): Promise<RunningFlowRecord> {
    return this.#serialize(async () => {
      const next = this.#prepare(id, patch);
      await this.#plane.updateFlow(id, next.plan);
      this.#entries.set(id, next);
      return next;
    });
  }

  /**
   * Fast channel change: applies `edit` (which adds subscribers) through
   * DataPlane.joinFlow at the boundary `at` names. The entry changes only
   * if the plane applied it. A plane without joinFlow applies it with
   * updateFlow and reports the counter's packetsOut after.
   */
  join(
    id: string,
    edit: (current: Readonly<Record<string, unknown>>) => Record<string, unknown>,
    at: JoinPoint,
  ): Promise<{ entry: RunningFlowRecord | undefined; result: JoinResult }> {
    return this.#serialize(async () => {
      const next = this.#prepare(id, edit);
      let result: JoinResult;
      if (this.#plane.joinFlow) result = await this.#plane.joinFlow(id, next.plan, at);
      else {
        await this.#plane.updateFlow(id, next.plan);
        const to = formatEndpoint(at.counter);
        result = { applied: true, count: this.#plane.flowStats(id)?.destinations.find((d) => d.to === to)?.packetsOut ?? 0, overlap: 0 };
      }
      if (!result.applied) return { entry: undefined, result };
      this.#entries.set(id, next);
      return { entry: next, result };
    });
  }

  /** The merged, validated and compiled next entry of a running flow (nothing applied yet). */
  #prepare(id: string, patch: Partial<FlowPolicy> | ((current: Readonly<Record<string, unknown>>) => Record<string, unknown>)): RunningFlowRecord {
    const entry = this.#entries.get(id);
    if (!entry) throw new InvalidArgumentError(`no flow with id '${id}'`);
    const merged = typeof patch === 'function' ? patch(entry.input) : { ...entry.input, ...(patch as object) };
    const spec = parseFlowPolicy(merged);
    const fixed: string[] = [];
    if (spec.type !== entry.spec.type) fixed.push('type');
    if ((spec.name ?? entry.plan.name) !== entry.plan.name) fixed.push('name');
    if (endpointKey(spec.listen) !== endpointKey(entry.spec.listen)) fixed.push('listen');
    if (fixed.length) {
      throw new PolicyValidationError(fixed.map((f) => ({ path: f, message: 'cannot change on a running flow (remove it and apply a new one)' })));
    }
    this.#checkSet(
      [...this.#entries.values()].filter((e) => e.id !== id),
      { name: entry.plan.name, where: '', spec, listen: entry.listen },
    );
    const plan = compileFlow(spec, entry.plan.name);
    return { ...entry, input: merged, spec, plan };
  }

  /** Stops a flow; resolves with its final counters (undefined if unknown). */
  remove(id: string): Promise<FlowStats | undefined> {
    return this.#serialize(async () => {
      if (!this.#entries.delete(id)) return undefined;
      return this.#plane.removeFlow(id);
    });
  }

  /** Removes every flow, returning their final counters by flow id, in the order they were added; the table stays usable. */
  clear(): Promise<Map<string, FlowStats>> {
    return this.#serialize(async () => {
      const ids = [...this.#entries.keys()];
      this.#entries.clear();
      const stats = await Promise.all(ids.map(async (id) => [id, await this.#plane.removeFlow(id)] as const));
      return new Map(stats.filter((e): e is readonly [string, FlowStats] => e[1] !== undefined));
    });
  }

  /**
   * The checks across flows (flow-set.ts), for `flow` against the running
   * `others`: the same function `sluice validate` runs on a file. A name
   * or listen address another flow holds is a ConflictError (caught here
   * with a message naming both flows, rather than as EADDRINUSE from
   * bind); duplicate subscribers and relay loops, through this host's
   * addresses as they are now, are a PolicyValidationError.
   */
  #checkSet(others: readonly RunningFlowRecord[], flow: FlowInSet): void {
    const set: FlowInSet[] = others.map((e) => ({ name: e.plan.name, where: '', spec: e.spec, listen: e.listen }));
    set.push(flow);
    const issues = flowSetIssues(set, localHostAddresses(), set.length - 1);
    const conflict = issues.find((i) => i.kind === 'name' || i.kind === 'listen');
    if (conflict) throw new ConflictError(`${conflict.path ? `${conflict.path} ` : ''}${conflict.message}`);
    if (issues.length)
      throw new PolicyValidationError(
        issues.map(({ path, message }) => ({ path, message })),
        `invalid policy for flow '${flow.name}'`,
      );
  }

  #serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
