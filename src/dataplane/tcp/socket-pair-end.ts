/**
 * How a pair of node:net sockets ends, for the paths whose sockets Node
 * still owns (user space, and sockmap, where Node sees the end of file and
 * the errors though not the bytes): an error on one side resets the other
 * (a proxy passes a reset on as a reset, not as an orderly close); a side
 * that has both read its end of file and finished writing is destroyed
 * (an allowHalfOpen socket otherwise stays open); once both sockets have
 * closed, `onBothClosed` gets the first error's code, if any.
 */
import type { Socket } from 'node:net';
import { resetTcpSocket } from '../../sys/tcp-reset.js';

export function watchSocketPair(client: Socket, upstream: Socket, onBothClosed: (error: string | undefined) => void): void {
  let error: string | undefined;
  let closed = 0;
  const onError = (other: Socket) => (err: Error) => {
    error ??= (err as NodeJS.ErrnoException).code ?? err.message;
    resetTcpSocket(other);
  };
  // One socket closing does not end the other direction (it may still owe its peer an end of file).
  const onClose = () => {
    if (++closed === 2) onBothClosed(error);
  };
  client.on('error', onError(upstream)).on('close', onClose);
  upstream.on('error', onError(client)).on('close', onClose);
  const endWhenBothDone = (s: Socket) => () => {
    if (s.writableFinished) s.destroy();
    else s.once('finish', () => s.destroy());
  };
  client.on('end', endWhenBothDone(client));
  upstream.on('end', endWhenBothDone(upstream));
}
