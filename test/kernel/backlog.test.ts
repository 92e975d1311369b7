/**
 * The host's backlog queue drops (root): test/kernel/backlog-in-netns.ts
 * inside a namespace this test creates. It changes nothing global.
 */
import { test } from 'node:test';
import { rootSkipReason } from '../../harness/netns/netns.js';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { probeKernelTier } from '../../src/dataplane/kernel/probe.js';

const root = rootSkipReason();
const probe = root ? undefined : await probeKernelTier();
const skip = root ?? (probe && !probe.available ? `kernel tier unavailable: ${probe.detail}` : undefined);

test('kernel tier: host backlog drops counted and warned about, inside a network namespace', { skip, timeout: 180_000 }, async () => {
  await runTestFileInNamespace('test/kernel/backlog-in-netns.ts', 160_000);
});
