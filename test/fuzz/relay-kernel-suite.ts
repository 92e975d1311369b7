/**
 * The relay socket fuzz on the kernel tier. Not a test file itself:
 * test/fuzz/relay-kernel.test.ts runs it inside a network namespace it
 * creates, so the tcx programs attach to that namespace's interfaces only.
 */
import { defineRelayFuzzSuite } from './relay-suite.js';

defineRelayFuzzSuite({ tier: 'kernel' });
