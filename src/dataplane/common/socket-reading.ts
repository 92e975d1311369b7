/**
 * Stopping and restarting Node's reads of a socket at the libuv level
 * (the handle's readStop/readStart). Socket.pause() alone only stops
 * 'data' events: Node keeps reading into its buffer, so the kernel's
 * receive queue drains and the peer's window stays open. After
 * stopReading, Node starts reading again by itself when its stream asks
 * for more (resume(), a read); holdReading stops the reads so that it
 * cannot (the handle still says it is reading, so the stream does not ask
 * for a start), until releaseReading.
 */
import type { Socket } from 'node:net';

interface ReadHandle {
  reading?: boolean;
  readStop?: () => number;
  readStart?: () => number;
}

function handleOf(s: Socket): ReadHandle | undefined {
  return (s as unknown as { _handle?: ReadHandle })._handle;
}

/** Node reads nothing more from `s` until startReading (or its stream asks again). */
export function stopReading(s: Socket): void {
  const handle = handleOf(s);
  if (handle?.readStop && handle.reading !== false) {
    handle.reading = false;
    handle.readStop();
  }
}

/** Node reads `s` again (as net.Socket's own tryReadStart does). */
export function startReading(s: Socket): void {
  const handle = handleOf(s);
  if (handle?.readStart && !handle.reading && !s.destroyed) {
    handle.reading = true;
    handle.readStart();
  }
}

const held = new WeakSet<Socket>();

/** Node reads nothing more from `s`, whatever its stream does, until releaseReading. */
export function holdReading(s: Socket): void {
  const handle = handleOf(s);
  if (!handle?.readStop || held.has(s)) return;
  held.add(s);
  // reading stays true: net.Socket's _read starts the handle only when it says it is not reading.
  handle.reading = true;
  handle.readStop();
}

/** Ends holdReading: Node reads `s` again. */
export function releaseReading(s: Socket): void {
  const handle = handleOf(s);
  if (!held.delete(s) || !handle?.readStart || s.destroyed) return;
  handle.reading = true;
  handle.readStart();
}
