/**
 * The conformance suite on the kernel tier. Not a test file itself:
 * test/conformance/kernel.test.ts runs it inside a network namespace it
 * creates, so the tcx programs attach to that namespace's interfaces only.
 */
import { defineConformanceSuite } from './suite.js';

defineConformanceSuite({ tier: 'kernel' });
