/**
 * The host's backlog queue drops (root): test/kernel/backlog-in-netns.ts
 * inside a namespace this test creates. It changes nothing global.
 */
import { test } from 'node:test';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { kernelTierSkipReason } from '../../harness/netns/kernel-skip.js';

const skip = await kernelTierSkipReason();

test('kernel tier: host backlog drops counted and warned about, inside a network namespace', { skip, timeout: 180_000 }, async () => {
  await runTestFileInNamespace('test/kernel/backlog-in-netns.ts', 160_000);
});
