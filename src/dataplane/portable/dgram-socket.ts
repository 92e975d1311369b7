/**
 * node:dgram sockets for the portable tier, with their ICMP errors
 * readable where the host allows it.
 *
 * libuv never reads a socket's error queue, and an unconnected UDP socket
 * hears of ICMP errors only with IP_RECVERR on. So on Linux, when the FFI
 * module loads, the socket is created, bound and given IP_RECVERR through
 * src/sys, then handed to node:dgram (`bind({ fd })`, public API), and the
 * flow reads the error queue itself (ErrorQueueReader) whenever libuv
 * reports an error on the socket or a send fails with an errno a pending
 * ICMP error can carry (see PortableFlow). Elsewhere it is a plain
 * node:dgram socket and `errors` is undefined: the tier then cannot see
 * unreachable subscribers (docs/ARCHITECTURE.md).
 */
import dgram from 'node:dgram';
import { ffiAvailable } from '../../sys/probe.js';
import { RawUdpSocket } from '../../sys/udp-socket.js';
import { ErrorQueueReader, enableRecvErr } from '../../sys/error-queue.js';
import { formatEndpoint, type Endpoint } from '../../wire/endpoint.js';
import { fromNodeError } from '../../errors.js';

export interface PortableSocket {
  readonly socket: dgram.Socket;
  /** Reads the socket's ICMP errors; undefined where they cannot be read. */
  readonly errors: ErrorQueueReader | undefined;
}

function createSocket(family: 4 | 6, bufferBytes: number | undefined): dgram.Socket {
  return dgram.createSocket({
    type: family === 4 ? 'udp4' : 'udp6',
    ...(bufferBytes ? { recvBufferSize: bufferBytes, sendBufferSize: bufferBytes } : {}),
  });
}

/**
 * A socket bound to `at` (port 0: the OS picks). Throws SyscallError
 * (bind: EADDRINUSE, ...) and leaves nothing open. Sends may start at
 * once; node:dgram queues them until the handle is ready.
 */
export function openPortableSocket(at: Endpoint, bufferBytes: number | undefined): { sock: PortableSocket; listening: Promise<void> } {
  const socket = createSocket(at.family, bufferBytes);
  const raw = ffiAvailable().ok ? RawUdpSocket.open(at.family) : undefined;
  if (!raw) {
    const listening = new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        socket.close();
        reject(fromNodeError('bind', err, formatEndpoint(at)));
      };
      socket.once('error', onError);
      socket.bind({ address: at.address, port: at.port, exclusive: true }, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    return { sock: { socket, errors: undefined }, listening };
  }
  let errors: ErrorQueueReader | undefined;
  try {
    raw.bind(at);
    try {
      enableRecvErr(raw.fd, at.family);
      errors = new ErrorQueueReader(raw.fd);
    } catch {
      // Refused: the flow runs without seeing ICMP errors.
    }
  } catch (err) {
    raw.close();
    throw err;
  }
  // From here node:dgram owns the descriptor (its close() closes it).
  const listening = new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    try {
      socket.bind({ fd: raw.fd }, () => {
        socket.off('error', reject);
        resolve();
      });
    } catch (err) {
      raw.close();
      reject(fromNodeError('bind', err, formatEndpoint(at)));
    }
  });
  return { sock: { socket, errors }, listening };
}
