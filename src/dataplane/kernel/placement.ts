/**
 * Where the kernel tier puts things: flow and destination slots (indexes
 * into the BPF arrays of counters and next hops), and which subscribers of
 * a flow the program copies to, at which position, and which it spills to
 * the batched companion (those beyond the kernel's limit, of the other
 * family, or multicast groups). It reads the flow entries a previous process left
 * pinned (their slots stay taken); the plane writes what it decides.
 */
import { isIPv4 } from 'node:net';
import type { FlowPlan } from '../../policy/compile.js';
import { endpointKey, type Endpoint } from '../../wire/endpoint.js';
import { NotSupportedError } from '../../errors.js';
import { isMulticastAddress } from '../../wire/ip-address.js';
import { mapKeys, mapLookup } from '../../sys/bpf.js';
import { FLOW_KEY_SIZE, FLOW_VALUE_SIZE, MAX_DESTS, MAX_FLOWS, MAX_SUBS, addr16, decodeFlowValue, type KernelSub } from './layout.js';

/** Slot allocator; freed slots are reused last (FIFO) so late increments from in-flight packets land nowhere that matters. */
export class Slots {
  readonly #free: number[];
  constructor(size: number, used: Iterable<number>) {
    const u = new Set(used);
    this.#free = [];
    for (let i = 0; i < size; i++) if (!u.has(i)) this.#free.push(i);
  }
  take(what: string): number {
    const s = this.#free.shift();
    if (s === undefined) throw new NotSupportedError(`kernel tier: no free ${what} slot`, `at most this many ${what}s at once`);
    return s;
  }
  give(slot: number): void {
    this.#free.push(slot);
  }
}

/** The subscribers of a flow found pinned at start, by `adoptedSubKey`: their destination slot and position. */
export type AdoptedSubs = Map<string, { destSlot: number; pos: number }>;

/** Hex of a map key or address: the identity the plane compares them by. */
export function hexKey(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** The key of a pinned subscriber in `AdoptedSubs` (its 16-byte address and port, as the flow entry holds them). */
export function adoptedSubKey(addr: Uint8Array, port: number): string {
  return `${hexKey(addr)}:${port}`;
}

/** A flow entry a previous process left pinned: claimed by the plane's addFlow (same listen address) or swept. */
export interface AdoptedFlow {
  readonly slot: number;
  readonly subs: AdoptedSubs;
}

/** The pinned flow entries found at start (by hex of the flow key), and slot allocators that leave their slots taken. */
export interface Pinned {
  readonly adopted: Map<string, AdoptedFlow>;
  readonly flowSlots: Slots;
  readonly destSlots: Slots;
}

/** Reads the `flows` map a previous process left pinned (`flowsFd`), or starts empty (undefined: nothing adopted). */
export function adoptPinned(flowsFd: number | undefined): Pinned {
  const adopted = new Map<string, AdoptedFlow>();
  const usedFlows: number[] = [];
  const usedDests: number[] = [];
  if (flowsFd !== undefined) {
    for (const key of mapKeys(flowsFd, FLOW_KEY_SIZE, 'flows')) {
      const raw = mapLookup(flowsFd, key, FLOW_VALUE_SIZE, 'flows');
      if (!raw) continue;
      const v = decodeFlowValue(raw);
      usedFlows.push(v.slot);
      const subs: AdoptedSubs = new Map();
      for (const s of v.subs) {
        usedDests.push(s.destSlot);
        subs.set(adoptedSubKey(s.addr, s.port), { destSlot: s.destSlot, pos: s.pos });
      }
      adopted.set(hexKey(key), { slot: v.slot, subs });
    }
  }
  return { adopted, flowSlots: new Slots(MAX_FLOWS, usedFlows), destSlots: new Slots(MAX_DESTS, usedDests) };
}

function sameFamily(a: Endpoint, b: Endpoint): boolean {
  return isIPv4(a.address) === isIPv4(b.address);
}

/** What `assignSubscribers` decided. */
export interface Assignment {
  /** Subscribers copied in the kernel. */
  readonly subs: KernelSub[];
  /** Subscribers the spill companion serves. */
  readonly spill: Endpoint[];
  /** Destination slots taken for new subscribers (their counters and hops must be zeroed). */
  readonly fresh: number[];
}

/**
 * Which subscribers the kernel copies to, and where. Assignment is
 * sticky: one that is in the kernel stays there at the same position, so
 * no subscriber ever moves between the kernel and the spill companion
 * (its counters would split) or within the array (see KernelSub.pos).
 * New subscribers take the lowest free positions.
 */
export function assignSubscribers(
  plan: FlowPlan,
  listen: Endpoint,
  current: readonly KernelSub[],
  currentSpill: readonly Endpoint[],
  destSlots: Slots,
  isLocal: (address: string) => boolean,
  adopted?: AdoptedSubs,
): Assignment {
  const cur = new Map(current.map((s) => [endpointKey(s.endpoint), s]));
  if (adopted) {
    for (const d of plan.destinations) {
      const a = adopted.get(adoptedSubKey(addr16(d.address), d.port));
      if (a && sameFamily(d, listen) && !isMulticastAddress(d.address))
        cur.set(endpointKey(d), { endpoint: d, destSlot: a.destSlot, pos: a.pos, local: false });
    }
  }
  const spilled = new Set(currentSpill.map(endpointKey));
  const kept = plan.destinations.map(endpointKey).filter((k) => cur.has(k));
  const taken = new Set(kept.map((k) => cur.get(k)!.pos));
  let nextFree = 0;
  const freePos = (): number | undefined => {
    while (taken.has(nextFree)) nextFree++;
    return nextFree < MAX_SUBS ? nextFree : undefined;
  };
  const subs: KernelSub[] = [];
  const spill: Endpoint[] = [];
  const fresh: number[] = [];
  for (const d of plan.destinations) {
    const k = endpointKey(d);
    const existing = cur.get(k);
    if (existing) {
      subs.push({ ...existing, endpoint: d, local: isLocal(d.address) });
      continue;
    }
    // Group subscribers go to the companion, whose socket sends with the flow's multicastOut (TTL, interface, loop).
    const pos = sameFamily(d, listen) && !spilled.has(k) && !isMulticastAddress(d.address) ? freePos() : undefined;
    if (pos === undefined) {
      spill.push(d);
      continue;
    }
    taken.add(pos);
    const destSlot = destSlots.take('destination');
    fresh.push(destSlot);
    subs.push({ endpoint: d, destSlot, pos, local: isLocal(d.address) });
  }
  return { subs, spill, fresh };
}

/**
 * The spill flow: a companion flow that serves the spilled subscribers.
 * It receives the program's spill copy on a socket bound like the listen
 * socket on another port, which takes only datagrams the program marked
 * (SLUICE_MARK), so nobody else can feed it. The program has applied the
 * allow list and the size and payload checks, and sends the copy from
 * the local address the datagram was sent to (a strict rp_filter on lo
 * would refuse the original sender), hence `any` source here. It sends
 * through the main companion's sockets, so its copies leave from the
 * listen port like every other copy, on every tier.
 */
export function spillPlan(plan: FlowPlan, listen: Endpoint, port: number, destinations: readonly Endpoint[]): FlowPlan {
  // The main companion joins the group; its spill flow only takes the program's marked copies.
  const { multicast: _join, ...rest } = plan;
  return { ...rest, name: `${plan.name} (spill)`, listen: { ...listen, port }, sources: { any: true }, destinations };
}
