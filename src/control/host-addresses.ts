/**
 * This host's interface addresses (in the current network namespace), for
 * the relay-loop check (src/policy/flow-set.ts), which stays pure. Read at
 * each check: addresses come and go while Sluice runs.
 */
import { networkInterfaces } from 'node:os';
import { hostAddressesFrom, type HostAddresses } from '../policy/flow-set.js';

export function localHostAddresses(): HostAddresses {
  return hostAddressesFrom(networkInterfaces());
}
