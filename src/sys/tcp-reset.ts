/**
 * Ending a TCP connection with a reset (RST) through node:net, without the
 * one case where Node's own resetAndDestroy() breaks the socket.
 *
 * resetAndDestroy() asks libuv for uv_tcp_close_reset, which refuses a
 * socket whose write side is shutting down (end() was called and the
 * shutdown request has not completed yet: libuv forbids mixing the two).
 * Node then emits an EINVAL 'reset' error but has already marked the
 * handle as closing, so the descriptor is never closed, 'close' never
 * comes, and at exit Node waits for that handle forever (the process
 * spins in its cleanup and never exits). A gateway hits this whenever it
 * resets a flow in the moment after it forwarded the far side's FIN.
 * Such a socket is destroyed instead: its FIN is already on the way, and
 * data the application sends after it is answered with a reset by the
 * kernel, the socket being closed.
 */
import type net from 'node:net';

/** Resets `s` (RST) where libuv can, otherwise destroys it; a socket already destroyed is left alone. */
export function resetTcpSocket(s: net.Socket): void {
  if (s.destroyed) return;
  // Node issues the shutdown only once every write is done: with bytes still queued a reset works (and discards them).
  const shuttingDown = s.writableEnded && !s.writableFinished && s.writableLength === 0;
  // Without a handle (never connected) resetAndDestroy() destroys with an ERR_SOCKET_CLOSED 'error': nothing to reset.
  const hasHandle = (s as net.Socket & { _handle?: unknown })._handle != null;
  if (!hasHandle || s.connecting || shuttingDown) {
    s.destroy();
    return;
  }
  try {
    s.resetAndDestroy();
  } catch {
    // ERR_INVALID_HANDLE_TYPE: not a TCP socket (a Unix socket has no reset).
    s.destroy();
  }
}
