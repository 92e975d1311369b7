/**
 * Entry point of the IP-level WAN emulator's worker thread (see
 * ip-emulator-engine.ts). Says 'ready' with how the thread is scheduled, or
 * fails start with the engine's error (runWorker), then runs the loop until
 * the controller sets the stop flag.
 */
import { runWorker } from '../../src/worker/port.js';
import { IpWanEngine } from './ip-emulator-engine.js';
import type { IpWanReady, IpWanWorkerData } from './ip-emulator-protocol.js';

runWorker<Record<never, never>, Record<never, never>, IpWanWorkerData>((port) => {
  const engine = new IpWanEngine(port.data);
  try {
    port.ready({ scheduling: engine.scheduling } satisfies IpWanReady);
    engine.run();
  } finally {
    engine.close();
  }
});
