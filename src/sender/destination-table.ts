import { endpointKey, formatEndpoint, type Endpoint } from '../wire/endpoint.js';
import type { SendableAggregate } from '../policy/schema.js';

/**
 * The destination table of an aggregate: one slot per distinct endpoint
 * after remapping. Endpoints parsed from the same string are one object
 * (see schema.ts), so most lookups hit the object map, not the key map.
 */
export class DestinationTable {
  readonly endpoints: Endpoint[] = [];
  readonly #byObject = new Map<Endpoint, number>();
  readonly #byKey = new Map<string, number>();
  readonly #remap: Map<string, Endpoint>;

  constructor(remap: SendableAggregate['remap']) {
    this.#remap = new Map((remap ?? []).map((r) => [endpointKey(r.from), r.to]));
  }

  /** The slot of where a message addressed to `to` goes. */
  indexOf(to: Endpoint): number {
    let i = this.#byObject.get(to);
    if (i === undefined) {
      const target = this.#remap.get(endpointKey(to)) ?? to;
      const key = endpointKey(target);
      i = this.#byKey.get(key);
      if (i === undefined) {
        i = this.endpoints.length;
        this.endpoints.push(target);
        this.#byKey.set(key, i);
      }
      this.#byObject.set(to, i);
    }
    return i;
  }

  names(): string[] {
    return this.endpoints.map(formatEndpoint);
  }
}
