/**
 * How far a TCP socket's sender has got, from TCP_INFO and SIOCOUTQ: the
 * sockmap path of tcp-redirect (src/dataplane/tcp/sockmap-joiner.ts) uses
 * it to know when every byte the kernel redirected to a socket is in its
 * send queue.
 */
import { libc } from './ffi.js';
import { syscallError } from './errno.js';

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
/** SIOCOUTQ (TIOCOUTQ): bytes in the send queue not yet acknowledged (write_seq - snd_una). */
const SIOCOUTQ = 0x5411;
/** struct tcp_info: tcpi_bytes_acked (u64) is at byte 120 (include/uapi/linux/tcp.h, 4.1+). */
const BYTES_ACKED_AT = 120;
const TCP_INFO_SIZE = 256;

const info = new Uint8Array(TCP_INFO_SIZE);
const infoView = new DataView(info.buffer);
const infoLen = new Uint32Array(1);
const outq = new Int32Array(1);

/**
 * Data bytes written into the socket's send queue so far (acknowledged
 * plus not yet acknowledged). A lower bound: TCP_INFO is read first, so an
 * acknowledgement between the two reads can only make it smaller.
 */
export function tcpWrittenBytes(fd: number): bigint {
  const c = libc();
  infoLen[0] = TCP_INFO_SIZE;
  if (c.getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, infoLen) < 0) throw syscallError('getsockopt(TCP_INFO)', c.errno(), `fd ${fd}`);
  if (infoLen[0]! < BYTES_ACKED_AT + 8) throw syscallError('getsockopt(TCP_INFO)', 0, `fd ${fd}: ${infoLen[0]} bytes, no tcpi_bytes_acked`);
  const acked = infoView.getBigUint64(BYTES_ACKED_AT, true);
  if (c.ioctlInt(fd, SIOCOUTQ, outq) < 0) throw syscallError('ioctl(SIOCOUTQ)', c.errno(), `fd ${fd}`);
  return acked + BigInt(outq[0]!);
}
