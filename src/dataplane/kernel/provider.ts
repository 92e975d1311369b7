/** The kernel tier as the tier registry (dataplane/tiers.ts) sees it: its probe and its plane. */
import type { TierProvider } from '../common/types.js';
import { KernelPlane } from './kernel-plane.js';
import { probeKernelTier } from './probe.js';

export const kernelProvider: TierProvider = {
  tier: 'kernel',
  // No send engine of its own: eBPF acts on arriving packets; one-shot sends go through the batched engine.
  sendEngine: 'batched',
  probe: probeKernelTier,
  async create(options) {
    return KernelPlane.start(options);
  },
};
