/**
 * A datagram port: what the TPO peer link and data mover send and receive
 * through (issue #6, "use the batched tier's I/O"). Two implementations:
 *
 * - portable: node:dgram, one send() and one 'message' event per datagram
 *   (what peer-link.ts did before; works everywhere).
 * - batched (batched-port.ts): the batched tier's FFI pieces. Sends made
 *   during one JS task are collected and leave in one sendmmsg, runs of
 *   equal-size datagrams to one destination as one UDP GSO message;
 *   receiving is recvmmsg (with UDP GRO) in a worker thread that hands
 *   whole batches to this thread.
 *
 * `openDatagramPort({ io: 'auto' })` picks batched when the probe says the
 * FFI and recvmmsg/sendmmsg work, and portable otherwise, keeping the
 * reason in `fallbackReason`.
 *
 * Sending never throws for what the network does (a full socket buffer, an
 * unreachable destination): UDP is lossy and the data mover retransmits,
 * so such datagrams are dropped and counted in `stats`. Setup failures
 * (socket, bind, a worker that cannot start) reject openDatagramPort with
 * a SyscallError or SluiceError.
 */
import { probeBatchedIo } from '../../sys/probe.js';
import { NotSupportedError, SyscallError } from '../../errors.js';
import type { DatagramPort, OpenDatagramPortOptions } from './port.js';
import { PortableDatagramPort } from './portable-port.js';

export type { DatagramListener, DatagramPort, DatagramPortStats, DatagramSource, DatagramTarget, OpenDatagramPortOptions } from './port.js';
export { PortableDatagramPort } from './portable-port.js';

/**
 * Opens a port bound to `bind`. 'batched' throws NotSupportedError where
 * the batched I/O is unavailable; 'auto' then falls back to portable (and
 * also when starting the batched port fails for a reason other than the
 * address, e.g. the worker cannot start), with the reason in fallbackReason.
 */
export async function openDatagramPort(options: OpenDatagramPortOptions): Promise<DatagramPort> {
  const io = options.io ?? 'auto';
  if (io === 'portable') return PortableDatagramPort.open(options, undefined);
  const probe = probeBatchedIo();
  if (!probe.available) {
    if (io === 'batched') throw new NotSupportedError('batched datagram I/O is unavailable', probe.reason);
    return PortableDatagramPort.open(options, probe.reason);
  }
  // Imported lazily so a portable-only process never loads the FFI module.
  const { BatchedDatagramPort } = await import('./batched-port.js');
  if (io === 'batched') return BatchedDatagramPort.open(options, probe);
  try {
    return await BatchedDatagramPort.open(options, probe);
  } catch (e) {
    // The address is the caller's problem on either kind; anything else (the thread, eventfd) is the batched kind's.
    if (e instanceof SyscallError && e.op === 'bind') throw e;
    return PortableDatagramPort.open(options, `batched port failed to start: ${(e as Error).message}`);
  }
}
