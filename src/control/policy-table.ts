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
import { ConflictError, InvalidArgumentError, PolicyValidationError } from '../errors.js';
import type { FlowTaps, MonitoredFlowStats } from './flow-taps.js';
import { FlowRtcp } from './flow-rtcp.js';

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
  readonly #taps: FlowTaps;
  readonly #rtcp: FlowRtcp;
  readonly #entries = new Map<string, RunningFlowRecord>();
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 1;

  /**
   * `onSilence(id, to, silent)`: subscriber `to` of flow `id` sent no RTCP
   * report for the policy's subscriberTimeoutMs and is sent nothing now
   * (`silent`), or reported again and is fed again.
   */
  constructor(plane: DataPlane, taps: FlowTaps, onSilence: (id: string, to: string, silent: boolean) => void = () => undefined) {
    this.#plane = plane;
    this.#taps = taps;
    this.#rtcp = new FlowRtcp(
      (id) => void this.#replan(id),
      onSilence,
      (id) => plane.flowStats(id),
    );
  }

  /** The data plane this table drives (for counter reads). */
  get plane(): DataPlane {
    return this.#plane;
  }

  /** The monitor taps of the flows whose stream is watched. */
  get taps(): FlowTaps {
    return this.#taps;
  }

  /** Counter snapshot of flow `id` as its owner sees it (the monitor tap's copies left out, its findings in `media`). */
  stats(id: string): MonitoredFlowStats | undefined {
    return this.#rtcp.view(id, this.#taps.view(id, this.#plane.flowStats(id)));
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
      const { listen } = await this.#run(id, plan, spec.listen, (p) => this.#plane.addFlow(id, p));
      const entry: RunningFlowRecord = { id, input: { ...(input as object) }, spec, plan, listen };
      if (spec.listen.port === 0) {
        // Only now is the port known: a running flow's subscriber may be it.
        try {
          this.#checkSet([...this.#entries.values()], { name, where: '', spec, listen });
        } catch (err) {
          await this.#removeFlow(id);
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
      await this.#run(id, next.plan, next.listen, (p) => this.#plane.updateFlow(id, p));
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
      const plane = this.#plane;
      const result = await this.#run(id, next.plan, next.listen, async (p) => {
        if (plane.joinFlow) return plane.joinFlow(id, p, at);
        await plane.updateFlow(id, p);
        const to = formatEndpoint(at.counter);
        return { applied: true, count: plane.flowStats(id)?.destinations.find((d) => d.to === to)?.packetsOut ?? 0, overlap: 0 };
      });
      if (!result.applied) return { entry: undefined, result };
      this.#entries.set(id, next);
      return { entry: next, result };
    });
  }

  /** Throws what update(id, patch) would throw for the policy, applying nothing (a fast join checks before its burst). */
  check(id: string, patch: (current: Readonly<Record<string, unknown>>) => Record<string, unknown>): void {
    this.#prepare(id, patch);
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
    // A group's join (SSM sources, interface) is made once, when the listen socket opens.
    if (JSON.stringify(spec.multicast) !== JSON.stringify(entry.spec.multicast)) fixed.push('multicast');
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
  remove(id: string): Promise<MonitoredFlowStats | undefined> {
    return this.#serialize(async () => {
      if (!this.#entries.delete(id)) return undefined;
      return this.#removeFlow(id);
    });
  }

  /** Removes every flow, returning their final counters by flow id, in the order they were added; the table stays usable. */
  clear(): Promise<Map<string, MonitoredFlowStats>> {
    return this.#serialize(async () => {
      const ids = [...this.#entries.keys()];
      this.#entries.clear();
      const stats = await Promise.all(ids.map(async (id) => [id, await this.#removeFlow(id)] as const));
      return new Map(stats.filter((e): e is readonly [string, MonitoredFlowStats] => e[1] !== undefined));
    });
  }

  /** Closes every monitor tap and RTCP relay (the Sluice closed, leaving its flows forwarding in the kernel). */
  closeSideSockets(): void {
    this.#taps.closeAll();
    this.#rtcp.closeAll();
  }

  /** Stops flow `id` in the data plane, then its tap: final counters as stats() shows them. */
  async #removeFlow(id: string): Promise<MonitoredFlowStats | undefined> {
    try {
      return this.#rtcp.view(id, this.#taps.view(id, await this.#plane.removeFlow(id)));
    } finally {
      this.#taps.close(id);
      this.#rtcp.close(id);
    }
  }

  /**
   * Sends `plan` to the data plane through `apply`, as the plane runs it:
   * silent RTCP subscribers left out (FlowRtcp), then the monitor tap added
   * (FlowTaps) — in that order, so that the tap is never taken for a
   * subscriber that does not report.
   */
  #run<T>(id: string, plan: FlowPlan, listen: Endpoint, apply: (planePlan: FlowPlan) => Promise<T>): Promise<T> {
    return this.#rtcp.run(id, plan, listen, (p) => this.#taps.run(id, p, listen, apply));
  }

  /** Applies flow `id`'s plan again (a subscriber's liveness changed), in turn with every other change. */
  async #replan(id: string): Promise<void> {
    await this.#serialize(async () => {
      const entry = this.#entries.get(id);
      if (entry) await this.#run(id, entry.plan, entry.listen, (p) => this.#plane.updateFlow(id, p));
    }).catch(() => undefined);
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
