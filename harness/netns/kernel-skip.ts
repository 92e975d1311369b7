/**
 * Why the kernel-tier tests in namespaces cannot run here, or undefined
 * when they can: the namespace reason first (rootSkipReason), then the
 * kernel tier's own probe (BPF, tcx) with what it found missing.
 */
import { probeKernelTier } from '../../src/dataplane/kernel/probe.js';
import { rootSkipReason } from './netns.js';

export async function kernelTierSkipReason(): Promise<string | undefined> {
  const root = rootSkipReason();
  if (root) return root;
  const probe = await probeKernelTier();
  return probe.available ? undefined : `kernel tier unavailable: ${probe.detail}`;
}
