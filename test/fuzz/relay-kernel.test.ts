/** The relay socket fuzz on the kernel tier, inside a network namespace created for it (root only). */
import { test } from 'node:test';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { kernelTierSkipReason } from '../../harness/netns/kernel-skip.js';

const skip = await kernelTierSkipReason();

test('socket fuzz: kernel relay (inside a network namespace)', { skip, timeout: 300_000 }, async () => {
  await runTestFileInNamespace('test/fuzz/relay-kernel-suite.ts');
});
