/**
 * An AF_PACKET raw socket bound to one interface: whole Ethernet frames in
 * and out, for the IP-level WAN emulator (harness/wan/ip-emulator.ts), which
 * bridges two veths in a namespace of its own.
 *
 * Options, and why:
 *  - created with protocol 0 (receives nothing) and bound with ETH_P_ALL on
 *    the interface, so no frame of another interface slips in between
 *    socket() and bind();
 *  - PACKET_VNET_HDR: every frame carries a virtio_net_hdr. Traffic from a
 *    local socket crosses veths with its checksum not yet computed
 *    (CHECKSUM_PARTIAL); re-sent as plain bytes the receiver would find the
 *    checksum wrong and drop it. With the header the kernel hands us the
 *    checksum state and takes it back on send, so forwarding is exact. It
 *    also reports GSO super-frames (gso_type), which the emulator counts;
 *  - PACKET_IGNORE_OUTGOING: our own sends on the interface are not read back;
 *  - promiscuous membership: frames for the far site's MAC are accepted
 *    whatever the interface's own address (it is a bridge port).
 */
import { libc } from '../../src/sys/ffi.js';
import { syscallError } from '../../src/sys/errno.js';
import {
  AF_PACKET,
  ETH_P_ALL,
  PACKET_ADD_MEMBERSHIP,
  PACKET_IGNORE_OUTGOING,
  PACKET_MR_PROMISC,
  PACKET_STATISTICS,
  PACKET_VNET_HDR,
  SIZEOF_PACKET_MREQ,
  SIZEOF_SOCKADDR_LL,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_PACKET,
  SOL_SOCKET,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
} from '../../src/sys/constants.js';

const htons = (v: number): number => ((v & 0xff) << 8) | ((v >> 8) & 0xff);

export class PacketSocket {
  readonly ifname: string;
  readonly ifindex: number;
  #fd: number;

  private constructor(fd: number, ifname: string, ifindex: number) {
    this.#fd = fd;
    this.ifname = ifname;
    this.ifindex = ifindex;
  }

  /** Opens, configures and binds a socket on `ifname` (in the calling thread's namespace). */
  static open(ifname: string, opts: { bufferBytes?: number; vnetHeader?: boolean } = {}): PacketSocket {
    const c = libc();
    const ifindex = c.if_nametoindex(ifname);
    if (ifindex === 0) throw syscallError('if_nametoindex', c.errno(), ifname);
    const fd = c.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw syscallError('socket(AF_PACKET)', c.errno(), ifname);
    const s = new PacketSocket(fd, ifname, ifindex);
    try {
      if (opts.vnetHeader !== false) s.#setInt(SOL_PACKET, PACKET_VNET_HDR, 1, 'setsockopt(PACKET_VNET_HDR)');
      s.#setInt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, 'setsockopt(PACKET_IGNORE_OUTGOING)');
      const bytes = opts.bufferBytes ?? 8 << 20;
      for (const [force, plain, name] of [
        [SO_RCVBUFFORCE, SO_RCVBUF, 'SO_RCVBUF'],
        [SO_SNDBUFFORCE, SO_SNDBUF, 'SO_SNDBUF'],
      ] as const) {
        try {
          s.#setInt(SOL_SOCKET, force, bytes, `setsockopt(${name}FORCE)`);
        } catch {
          s.#setInt(SOL_SOCKET, plain, bytes, `setsockopt(${name})`);
        }
      }
      const ll = new DataView(new ArrayBuffer(SIZEOF_SOCKADDR_LL));
      ll.setUint16(0, AF_PACKET, true);
      ll.setUint16(2, htons(ETH_P_ALL), true);
      ll.setInt32(4, ifindex, true);
      if (c.bind(fd, new Uint8Array(ll.buffer), SIZEOF_SOCKADDR_LL) < 0) throw syscallError('bind(AF_PACKET)', c.errno(), ifname);
      const mreq = new DataView(new ArrayBuffer(SIZEOF_PACKET_MREQ));
      mreq.setInt32(0, ifindex, true);
      mreq.setUint16(4, PACKET_MR_PROMISC, true);
      if (c.setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, new Uint8Array(mreq.buffer), SIZEOF_PACKET_MREQ) < 0) {
        throw syscallError('setsockopt(PACKET_ADD_MEMBERSHIP)', c.errno(), ifname);
      }
    } catch (err) {
      s.close();
      throw err;
    }
    return s;
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error(`packet socket on ${this.ifname} is closed`);
    return this.#fd;
  }

  #setInt(level: number, name: number, value: number, op: string): void {
    const c = libc();
    if (c.setsockopt(this.fd, level, name, new Int32Array([value]), 4) < 0) throw syscallError(op, c.errno(), this.ifname);
  }

  readonly #stats = new Uint32Array(2);
  readonly #statsLen = new Uint32Array(1);

  /**
   * Frames the kernel passed to the socket and dropped for lack of receive
   * buffer since the last call (PACKET_STATISTICS resets on read).
   */
  takeStatistics(): { packets: number; drops: number } {
    const c = libc();
    this.#statsLen[0] = 8;
    if (c.getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, this.#stats, this.#statsLen) < 0) {
      throw syscallError('getsockopt(PACKET_STATISTICS)', c.errno(), this.ifname);
    }
    return { packets: this.#stats[0]!, drops: this.#stats[1]! };
  }

  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }
}
