/** The relay socket fuzz on the kernel tier, inside a network namespace created for it (root only). */
import { test } from 'node:test';
import { rootSkipReason } from '../../harness/netns/netns.js';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { probeKernelTier } from '../../src/dataplane/kernel/probe.js';

const root = rootSkipReason();
const probe = root ? undefined : await probeKernelTier();
const skip = root ?? (probe && !probe.available ? `kernel tier unavailable: ${probe.detail}` : undefined);

test('socket fuzz: kernel relay (inside a network namespace)', { skip, timeout: 300_000 }, async () => {
  await runTestFileInNamespace('test/fuzz/relay-kernel-suite.ts');
});
