/**
 * The conformance suite on the kernel tier, run inside a network namespace
 * created for it (the tcx programs attach to that namespace's lo only).
 */
import { test } from 'node:test';
import { rootSkipReason } from '../../harness/netns/netns.js';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { probeKernelTier } from '../../src/dataplane/kernel/probe.js';

const root = rootSkipReason();
const probe = root ? undefined : await probeKernelTier();
const skip = root ?? (probe && !probe.available ? `kernel tier unavailable: ${probe.detail}` : undefined);

test('conformance: kernel tier (inside a network namespace)', { skip, timeout: 300_000 }, async () => {
  await runTestFileInNamespace('test/conformance/kernel-suite.ts');
});
