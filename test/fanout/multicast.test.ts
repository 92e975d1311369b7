/**
 * Multicast inputs of the live fan-out (root): test/fanout/multicast-in-netns.ts
 * inside a namespace this test creates. It changes nothing global.
 */
import { test } from 'node:test';
import { runTestFileInNamespace } from '../../harness/netns/in-namespace.js';
import { rootSkipReason } from '../../harness/netns/netns.js';
import { spliceUnavailable } from '../../src/sys/splice.js';

const skip = rootSkipReason() ?? spliceUnavailable();
if (skip) console.log(`# fan-out multicast test skipped: ${skip}`);

test('fan-out: a multicast input joined on demand inside a network namespace', { skip, timeout: 120_000 }, async () => {
  await runTestFileInNamespace('test/fanout/multicast-in-netns.ts', 100_000);
});
