/** The conformance suite on the batched tier with 2 workers per flow (SO_REUSEPORT + BPF steering, workers-plane.ts). */
import { defineConformanceSuite } from './suite.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { probeSteering } from '../../src/sys/reuseport.js';

const probe = probeBatchedIo();
const steer = probeSteering();
const skip = !probe.available ? `batched tier unavailable: ${probe.reason}` : !steer.available ? `reuseport steering unavailable: ${steer.reason}` : undefined;
defineConformanceSuite({ tier: 'batched', workers: 2, ...(skip ? { skip } : {}) });
