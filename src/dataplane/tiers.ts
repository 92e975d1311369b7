/**
 * The one tier registry: which tiers exist, in speed order, how each is
 * probed and started, and which engine its one-shot sends run on. Flows
 * (createDataPlane) and sends (selectSendTier, sendEngineOf) choose
 * through it. `auto` takes the fastest tier whose probe succeeds; an
 * explicit tier that is unavailable is an error that says why, never a
 * silent fallback.
 */
import { NotSupportedError } from '../errors.js';
import { TIER_NAMES, type SendEngineName, type TierChoice, type TierName } from '../policy/schema.js';
import { portableProvider } from './portable/portable-plane.js';
import { batchedProvider, type BatchedFlowDetail } from './batched/batched-plane.js';
import type { KernelFlowDetail } from './kernel/kernel-plane.js';
import { kernelProvider } from './kernel/provider.js';
import type { DataPlane, DataPlaneOptions, TierProbe, TierProvider } from './common/types.js';

export type { BatchedFlowDetail, KernelFlowDetail };

/**
 * Flow.detail(): one flow's diagnostics in its tier's own shape (the
 * plane's flowDetail()), tagged with the tier so that callers can narrow.
 */
export type FlowDetail = { readonly tier: 'portable' } | ({ readonly tier: 'batched' } & BatchedFlowDetail) | ({ readonly tier: 'kernel' } & KernelFlowDetail);

/** Fastest first: the order `auto` tries them in. */
const providers: readonly TierProvider[] = [kernelProvider, batchedProvider, portableProvider];

function provider(tier: TierName): TierProvider {
  return providers.find((p) => p.tier === tier)!;
}

/** Probes every tier; never throws. */
export async function probeTiers(): Promise<TierProbe[]> {
  return Promise.all(providers.map(safeProbe));
}

function safeProbe(p: TierProvider): Promise<TierProbe> {
  return p.probe().catch((err: unknown): TierProbe => ({ tier: p.tier, available: false, detail: `probe failed: ${String(err)}` }));
}

/** `choice` when it is an available tier; NotSupportedError naming why not otherwise. */
async function explicitTier(choice: TierName): Promise<TierProvider> {
  if (!TIER_NAMES.includes(choice)) throw new NotSupportedError(`unknown tier '${String(choice)}'`, `use auto, ${TIER_NAMES.join(', ')}`);
  const p = provider(choice);
  const probe = await safeProbe(p);
  if (!probe.available) throw new NotSupportedError(`tier '${choice}' is unavailable`, probe.detail);
  return p;
}

/** The first available tier of `candidates` (speed order). */
async function fastestOf(candidates: readonly TierProvider[]): Promise<TierProvider> {
  const probes = await Promise.all(candidates.map(safeProbe));
  const i = probes.findIndex((p) => p.available);
  if (i >= 0) return candidates[i]!;
  throw new NotSupportedError('no tier is available', probes.map((p) => `${p.tier}: ${p.detail}`).join('; '));
}

/** Creates the data plane for `choice`; `auto` picks the fastest available. */
export async function createDataPlane(choice: TierChoice, options: DataPlaneOptions = {}): Promise<DataPlane> {
  const p = choice === 'auto' ? await fastestOf(providers) : await explicitTier(choice);
  return p.create(options);
}

/** The engine one-shot sends use on `tier`. */
export function sendEngineOf(tier: TierName): SendEngineName {
  return provider(tier).sendEngine;
}

/**
 * The tier one-shot sends run for, without starting any data plane: an
 * explicit tier must be available (so `--tier kernel` fails where the
 * kernel tier would), and then sends on that tier's engine; `auto` takes
 * the fastest tier with an engine of its own (the kernel tier has none: its
 * probe, which loads eBPF, would decide nothing).
 */
export async function selectSendTier(choice: TierChoice): Promise<TierName> {
  if (choice !== 'auto') return (await explicitTier(choice)).tier;
  return (await fastestOf(providers.filter((p) => p.sendEngine === p.tier))).tier;
}
