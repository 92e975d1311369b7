/**
 * Tier selection by capability probing. `auto` takes the fastest tier whose
 * probe succeeds; an explicit tier that is unavailable is an error that says
 * why, never a silent fallback.
 */
import { NotSupportedError } from '../errors.js';
import { TIER_NAMES, type TierChoice } from '../policy/schema.js';
import { portableProvider } from './portable/portable-plane.js';
import { batchedProvider, type BatchedFlowDetail } from './batched/batched-plane.js';
import { kernelProvider, type KernelFlowDetail } from './kernel/kernel-plane.js';
import type { DataPlane, DataPlaneOptions, TierProbe, TierProvider } from './types.js';

export type { BatchedFlowDetail, KernelFlowDetail };

/**
 * Flow.detail(): one flow's diagnostics in its tier's own shape (the
 * plane's flowDetail()), tagged with the tier so that callers can narrow.
 */
export type FlowDetail = { readonly tier: 'portable' } | ({ readonly tier: 'batched' } & BatchedFlowDetail) | ({ readonly tier: 'kernel' } & KernelFlowDetail);

/** Fastest first: the order `auto` tries them in. */
const providers: readonly TierProvider[] = [kernelProvider, batchedProvider, portableProvider];

/** Probes every tier; never throws. */
export async function probeTiers(): Promise<TierProbe[]> {
  return Promise.all(
    providers.map((p) => p.probe().catch((err: unknown): TierProbe => ({ tier: p.tier, available: false, detail: `probe failed: ${String(err)}` }))),
  );
}

/** Creates the data plane for `choice`; `auto` picks the fastest available. */
export async function createDataPlane(choice: TierChoice, options: DataPlaneOptions = {}): Promise<DataPlane> {
  if (choice !== 'auto') {
    if (!TIER_NAMES.includes(choice)) throw new NotSupportedError(`unknown tier '${String(choice)}'`, `use auto, ${TIER_NAMES.join(', ')}`);
    const provider = providers.find((p) => p.tier === choice)!;
    const probe = await provider.probe();
    if (!probe.available) throw new NotSupportedError(`tier '${choice}' is unavailable`, probe.detail);
    return provider.create(options);
  }
  const probes = await probeTiers();
  for (const provider of providers) {
    if (probes.find((p) => p.tier === provider.tier)?.available) return provider.create(options);
  }
  throw new NotSupportedError('no tier is available', probes.map((p) => `${p.tier}: ${p.detail}`).join('; '));
}
