/**
 * The conformance suite on the kernel tier with kernelHook 'xdp'. Not a
 * test file itself: test/conformance/kernel-xdp.test.ts runs it inside a
 * network namespace it creates. Its loopback traffic stays at tcx (lo has
 * no driver receive path for local sockets); its raw-frame test's relay
 * namespace has veths, where the XDP program runs natively in front of tcx.
 */
import { defineConformanceSuite } from './suite.js';

defineConformanceSuite({ tier: 'kernel', kernelHook: 'xdp' });
