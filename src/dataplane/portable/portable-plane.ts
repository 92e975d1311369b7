/**
 * The portable tier: node:dgram sockets in the application's thread. Runs
 * wherever Node runs; pays Node's per-datagram cost (~4 µs on a 2-core host).
 */
import type { DataPlane, DataPlaneOptions, JoinPoint, JoinResult, TierProvider } from '../common/types.js';
import type { FlowPlan } from '../../policy/compile.js';
import type { FlowStats } from '../common/counters.js';
import { InvalidArgumentError } from '../../errors.js';
import { PortableFlow } from './portable-flow.js';
import { OwnSockets } from '../common/own-sockets.js';
import { DEFAULT_SOCKET_BUFFER } from '../common/defaults.js';

export class PortablePlane implements DataPlane {
  readonly tier = 'portable' as const;
  readonly #flows = new Map<string, PortableFlow>();
  readonly #options: DataPlaneOptions;
  /** Every flow socket of this plane: datagrams from them are relay loops. */
  readonly #own = new OwnSockets();

  constructor(options: DataPlaneOptions = {}) {
    this.#options = options;
  }

  async addFlow(id: string, plan: FlowPlan) {
    if (this.#flows.has(id)) throw new InvalidArgumentError(`flow id '${id}' is already in use`);
    const flow = await PortableFlow.start(plan, {
      socketBufferBytes: this.#options.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER,
      own: this.#own,
    });
    this.#flows.set(id, flow);
    return { listen: flow.listen };
  }

  async updateFlow(id: string, plan: FlowPlan): Promise<void> {
    const flow = this.#flows.get(id);
    if (!flow) throw new InvalidArgumentError(`no flow with id '${id}'`);
    flow.update(plan);
  }

  async joinFlow(id: string, plan: FlowPlan, at: JoinPoint): Promise<JoinResult> {
    const flow = this.#flows.get(id);
    if (!flow) throw new InvalidArgumentError(`no flow with id '${id}'`);
    return flow.join(plan, at.counter, at.after, at.force === true);
  }

  async removeFlow(id: string): Promise<FlowStats | undefined> {
    const flow = this.#flows.get(id);
    if (!flow) return undefined;
    this.#flows.delete(id);
    await flow.close();
    return flow.stats(this.tier);
  }

  flowStats(id: string): FlowStats | undefined {
    return this.#flows.get(id)?.stats(this.tier);
  }

  async close(): Promise<void> {
    const flows = [...this.#flows.values()];
    this.#flows.clear();
    await Promise.all(flows.map((f) => f.close()));
  }
}

export const portableProvider: TierProvider = {
  tier: 'portable',
  sendEngine: 'portable',
  async probe() {
    return { tier: 'portable', available: true, detail: 'node:dgram, one send per copy in the application thread' };
  },
  async create(options) {
    return new PortablePlane(options);
  },
};
