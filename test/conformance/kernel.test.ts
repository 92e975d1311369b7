/**
 * The conformance suite on the kernel tier, run inside a network namespace
 * created for it (the tcx programs attach to that namespace's lo only).
 */
import { test } from 'node:test';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { kernelTierSkipReason } from '../../harness/netns/kernel-skip.js';

const skip = await kernelTierSkipReason();

test('conformance: kernel tier (inside a network namespace)', { skip, timeout: 300_000 }, async () => {
  await runTestFileInNamespace('test/conformance/kernel-suite.ts');
});
