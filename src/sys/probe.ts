/**
 * What the running kernel offers the batched tier, found by trying it:
 * the FFI binding, recvmmsg/sendmmsg, UDP GSO (UDP_SEGMENT) and its segment
 * limit, UDP GRO. Probing never throws; each finding carries a reason that
 * `sluice doctor` prints.
 */
import { loadFfi } from './ffi.js';
import { EINVAL, EIO, ENOSYS, errnoName } from './errno.js';
import { MSG_DONTWAIT, SOL_UDP, UDP_GRO, UDP_MAX_SEGMENTS_BASE, UDP_SEGMENT } from './constants.js';
import { RawUdpSocket } from './udp-socket.js';
import { SendVector } from './send-vector.js';
import { NativeRegion } from './memory.js';
import { RecvRing } from './recv-ring.js';
import { writeSockaddr } from './sockaddr.js';

export interface BatchedIoProbe {
  /** FFI loaded and recvmmsg/sendmmsg work. */
  readonly available: boolean;
  readonly reason: string;
  readonly gso: boolean;
  /** Most segments per GSO send the kernel accepted (64 before Linux 6.9, 128 after); 0 without GSO. */
  readonly gsoMaxSegments: number;
  readonly gro: boolean;
  /** One line per finding, for `sluice doctor`. */
  readonly notes: readonly string[];
}

let cached: BatchedIoProbe | undefined;

export function probeBatchedIo(): BatchedIoProbe {
  cached ??= runProbe();
  return cached;
}

function runProbe(): BatchedIoProbe {
  const ffi = loadFfi();
  if (!ffi.ok) return { available: false, reason: ffi.reason, gso: false, gsoMaxSegments: 0, gro: false, notes: [ffi.reason] };
  const c = ffi.libc;
  const notes: string[] = [];
  let sock: RawUdpSocket | undefined;
  try {
    sock = RawUdpSocket.open(4);
    // vlen 0 is a no-op that still enters the syscall: ENOSYS means it is missing.
    const vec = new NativeRegion(64);
    if (c.sendmmsg(sock.fd, vec.address, 0, MSG_DONTWAIT) < 0 && c.errno() === ENOSYS) {
      return unavailable('sendmmsg is not implemented by this kernel');
    }
    if (c.recvmmsg(sock.fd, vec.address, 0, MSG_DONTWAIT, 0) < 0 && c.errno() === ENOSYS) {
      return unavailable('recvmmsg is not implemented by this kernel');
    }
    notes.push('recvmmsg/sendmmsg: yes');
    let gso = false;
    try {
      sock.getInt(SOL_UDP, UDP_SEGMENT);
      gso = true;
    } catch (e) {
      notes.push(`UDP GSO: no (getsockopt UDP_SEGMENT: ${(e as Error).message})`);
    }
    let gro = false;
    try {
      sock.setInt(SOL_UDP, UDP_GRO, 1);
      gro = true;
      notes.push('UDP GRO: yes (coalesced receive when the ingress device does GRO)');
    } catch (e) {
      notes.push(`UDP GRO: no (${(e as Error).message})`);
    }
    let gsoMaxSegments = 0;
    if (gso) {
      gsoMaxSegments = probeSegmentLimit();
      notes.push(
        gsoMaxSegments > 0
          ? `UDP GSO: yes, up to ${gsoMaxSegments} segments per send`
          : 'UDP GSO: option present but a segmented send over loopback failed; GSO stays off',
      );
      gso = gsoMaxSegments > 0;
    }
    return { available: true, reason: 'recvmmsg/sendmmsg through koffi', gso, gsoMaxSegments, gro, notes };
  } catch (e) {
    return unavailable(`probe failed: ${(e as Error).message}`);
  } finally {
    sock?.close();
  }

  function unavailable(reason: string): BatchedIoProbe {
    return { available: false, reason, gso: false, gsoMaxSegments: 0, gro: false, notes: [...notes, reason] };
  }
}

/**
 * Sends 128 and then 64 tiny segments in one GSO message to a socket of our
 * own on 127.0.0.1. Returns the larger count the kernel took, 0 if neither
 * (e.g. loopback down in a fresh namespace: then GSO is assumed at the
 * conservative 64, since the option itself exists).
 */
function probeSegmentLimit(): number {
  let rx: RawUdpSocket | undefined;
  let tx: RawUdpSocket | undefined;
  try {
    rx = RawUdpSocket.open(4);
    tx = RawUdpSocket.open(4);
    try {
      rx.bind({ family: 4, address: '127.0.0.1', port: 0 });
    } catch {
      return UDP_MAX_SEGMENTS_BASE;
    }
    const to = rx.localEndpoint();
    const name = new NativeRegion(32);
    const nameLength = writeSockaddr(name.bytes, 0, 4, to.address, to.port);
    const payload = new NativeRegion(128 * 8);
    const vec = new SendVector(1, 1);
    const ring = new RecvRing(8, 8);
    for (const segments of [128, UDP_MAX_SEGMENTS_BASE]) {
      vec.clear();
      vec.begin(name.address, nameLength, 8);
      vec.addIov(payload.address, segments * 8);
      const r = vec.send(tx.fd, 0);
      // Drain what arrived so the probe leaves nothing queued.
      for (let n = ring.receive(rx.fd, 8, false); n > 0; n = ring.receive(rx.fd, 8, false)) {
        for (let i = 0; i < n; i++) ring.release(ring.slotOf(i));
      }
      if (r === 1) return segments;
      const errno = -r;
      // EINVAL: too many segments (try fewer) or no GSO; EIO: the path
      // cannot do it. Anything else (loopback down in a fresh namespace:
      // ENETUNREACH; a full buffer) says nothing about GSO: the option
      // exists, so assume the limit every GSO kernel accepts.
      if (errno !== EINVAL && errno !== EIO) return UDP_MAX_SEGMENTS_BASE;
      if (segments === UDP_MAX_SEGMENTS_BASE) {
        process.emitWarning(`UDP GSO probe: sendmmsg failed with ${errnoName(errno)}`);
        return 0;
      }
    }
    return 0;
  } finally {
    rx?.close();
    tx?.close();
  }
}

/** Whether the FFI binding loads here (Linux with koffi's prebuilt module), and why not. Never throws. */
export function ffiAvailable(): { ok: true } | { ok: false; reason: string } {
  const ffi = loadFfi();
  return ffi.ok ? { ok: true } : { ok: false, reason: ffi.reason };
}
