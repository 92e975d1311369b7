/**
 * SO_REUSEPORT groups steered by source: several sockets bound to one
 * address, and a classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that picks
 * the socket for each datagram from a hash of its source address and port.
 * One source therefore always reaches the same socket (and the worker that
 * reads it), so per-source order holds while sources spread over workers.
 *
 * The program runs in the UDP lookup with skb->data past the UDP header;
 * it reads the IP header through SKF_NET_OFF, and the UDP source port at
 * the network header plus the IPv4 header length (IPv6: right after the
 * fixed header; a datagram with extension headers hashes whatever is
 * there, which is still a function of the datagram, so still one socket).
 * The value it returns is an index into the group, in bind order; an index
 * the group does not have (while it is still being built) makes the kernel
 * fall back to its own hash.
 */
import { libc } from './ffi.js';
import { syscallError } from './errno.js';
import { NativeRegion } from './memory.js';
import { RawUdpSocket } from './udp-socket.js';
import { SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, SO_DETACH_REUSEPORT_BPF } from './constants.js';

/** The most sockets a steered group gets (a sanity bound, far above any core count here). */
export const MAX_STEERED_SOCKETS = 256;
const NET = 0xfff00000; // SKF_NET_OFF
const AD_PROTOCOL = 0xfffff000; // SKF_AD_OFF + SKF_AD_PROTOCOL: ntohs(skb->protocol)
const GOLDEN = 0x9e3779b1;

type Insn = readonly [code: number, jt: number, jf: number, k: number];

/** The steering program for a group of `sockets` sockets (classic BPF instructions). */
export function steeringProgram(sockets: number): Insn[] {
  checkCount(sockets);
  const v4: Insn[] = [
    [0x20, 0, 0, NET + 12], // ld [net+12]: source address
    [0x02, 0, 0, 0], // st M[0]
    [0x30, 0, 0, NET], // ldb [net+0]: version and IHL
    [0x54, 0, 0, 0x0f], // and #0xf
    [0x64, 0, 0, 2], // lsh #2: header length in bytes
    [0x07, 0, 0, 0], // tax
    [0x48, 0, 0, NET], // ldh [x + net]: UDP source port
    [0x07, 0, 0, 0], // tax
    [0x60, 0, 0, 0], // ld M[0]
  ];
  const v6: Insn[] = [
    [0x20, 0, 0, NET + 8], // ld [net+8]: first word of the source address
    [0x07, 0, 0, 0], // tax
    ...[12, 16, 20].flatMap((o): Insn[] => [
      [0x20, 0, 0, NET + o], // ld [net+o]
      [0xac, 0, 0, 0], // xor x
      [0x07, 0, 0, 0], // tax
    ]),
    [0x02, 0, 0, 0], // st M[0]: the four words folded
    [0x28, 0, 0, NET + 40], // ldh [net+40]: UDP source port
    [0x07, 0, 0, 0], // tax
    [0x60, 0, 0, 0], // ld M[0]
  ];
  // A = address word, X = port: A = mix(A ^ X) % sockets.
  const hash: Insn[] = [
    [0xac, 0, 0, 0], // xor x
    [0x24, 0, 0, GOLDEN], // mul #golden
    [0x07, 0, 0, 0], // tax
    [0x74, 0, 0, 15], // rsh #15
    [0xac, 0, 0, 0], // xor x
    [0x94, 0, 0, sockets], // mod #sockets
    [0x16, 0, 0, 0], // ret a
  ];
  return [
    [0x20, 0, 0, AD_PROTOCOL], // ld protocol
    [0x15, 0, v6.length + 1, 0x86dd], // jeq #ETH_P_IPV6: fall into v6, else skip to v4
    ...v6,
    [0x05, 0, 0, v4.length], // ja hash
    ...v4,
    ...hash,
  ];
}

/**
 * The socket index the program picks for a source (the same arithmetic in
 * JavaScript): for tests, and for saying which worker a source lands on.
 * `address` as text (IPv4 dotted, or IPv6).
 */
export function steeringIndex(address: string, port: number, sockets: number): number {
  checkCount(sockets);
  let a: number;
  if (address.includes(':')) {
    const w = ipv6Words(address);
    a = (w[0]! ^ w[1]! ^ w[2]! ^ w[3]!) >>> 0;
  } else {
    a = address.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
  }
  let m = Math.imul((a ^ port) >>> 0, GOLDEN) >>> 0;
  m = ((m >>> 15) ^ m) >>> 0;
  return m % sockets;
}

/** Attaches the steering program for `sockets` sockets to the reuseport group of `fd` (bound, SO_REUSEPORT set). */
export function attachSteering(fd: number, sockets: number): void {
  const insns = steeringProgram(sockets);
  const prog = new NativeRegion(insns.length * 8);
  insns.forEach(([code, jt, jf, k], i) => {
    prog.view.setUint16(i * 8, code, true);
    prog.view.setUint8(i * 8 + 2, jt);
    prog.view.setUint8(i * 8 + 3, jf);
    prog.view.setUint32(i * 8 + 4, k >>> 0, true);
  });
  const fprog = new NativeRegion(16);
  fprog.view.setUint16(0, insns.length, true);
  fprog.setPointer(8, prog.address);
  const c = libc();
  if (c.setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog.bytes.subarray(0, 16), 16) < 0) {
    throw syscallError('setsockopt(SO_ATTACH_REUSEPORT_CBPF)', c.errno(), `fd ${fd}, ${sockets} sockets`);
  }
}

/**
 * Removes the group's program: true if one was attached, false if none
 * was (ENOENT). This is how a test sees that steering is in place.
 */
export function detachSteering(fd: number): boolean {
  const c = libc();
  if (c.setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, new Int32Array([0]), 4) === 0) return true;
  const errno = c.errno();
  if (errno === ENOENT) return false;
  throw syscallError('setsockopt(SO_DETACH_REUSEPORT_BPF)', errno, `fd ${fd}`);
}

const ENOENT = 2;

function checkCount(sockets: number): void {
  if (!Number.isInteger(sockets) || sockets < 1 || sockets > MAX_STEERED_SOCKETS) {
    throw new RangeError(`a steered reuseport group has 1..${MAX_STEERED_SOCKETS} sockets, not ${sockets}`);
  }
}

/** The four 32-bit words of an IPv6 address in text form (:: and an embedded IPv4 tail allowed). */
function ipv6Words(address: string): number[] {
  let text = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(tail === undefined ? 0 : 8 - h.length - t.length).fill('0'), ...t].map((g) => parseInt(g, 16));
  return [0, 1, 2, 3].map((i) => ((groups[2 * i]! << 16) | groups[2 * i + 1]!) >>> 0);
}

/**
 * Whether steering works here: binds two SO_REUSEPORT sockets on loopback,
 * attaches the program and detaches it. `reason` says which call failed.
 */
export function probeSteering(): { available: true } | { available: false; reason: string } {
  const opened: RawUdpSocket[] = [];
  try {
    const a = RawUdpSocket.open(4);
    opened.push(a);
    a.setReusePort();
    a.bind({ family: 4, address: '127.0.0.1', port: 0 });
    const b = RawUdpSocket.open(4);
    opened.push(b);
    b.setReusePort();
    b.bind(a.localEndpoint());
    attachSteering(a.fd, 2);
    if (!detachSteering(b.fd)) return { available: false, reason: 'the program attached but the group does not hold it' };
    return { available: true };
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  } finally {
    for (const s of opened) s.close();
  }
}
