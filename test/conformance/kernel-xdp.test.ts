/**
 * The conformance suite on the kernel tier with kernelHook 'xdp', run
 * inside a network namespace created for it: the same packets on the wire
 * as with tcx alone. test/kernel/xdp.test.ts checks that XDP, not tcx,
 * carries redirects between interfaces.
 */
import { test } from 'node:test';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { kernelTierSkipReason } from '../../harness/netns/kernel-skip.js';

const skip = await kernelTierSkipReason();

test("conformance: kernel tier with kernelHook 'xdp' (inside a network namespace)", { skip, timeout: 300_000 }, async () => {
  await runTestFileInNamespace('test/conformance/kernel-xdp-suite.ts');
});
