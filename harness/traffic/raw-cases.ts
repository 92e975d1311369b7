/**
 * The raw-frame cases of the conformance suite: datagrams no socket would
 * send (lying lengths, bad checksums, IP options, fragments, frames for
 * another host, martian and spoofed sources), each with what the Linux
 * stack does with it, which every tier must match: delivered to the flow's
 * socket (and so relayed, with these payload bytes) or dropped before any
 * socket sees it (then no tier counts it).
 *
 * Topology (test/conformance/suite.ts): the relay namespace has `ra`
 * (10.210.1.1/24, fd00:210::1/64) whose veth peer `pb` sits in the peer
 * namespace, and a second veth `rd` with routes to 10.220.0.0/24 and
 * fd00:220::/64 (sources routed through another interface). Frames are
 * injected on `pb`, so they arrive at `ra`'s ingress.
 */
import { udpFragments, udpFrame, vnetNeedsCsum, type UdpFrameSpec } from './frames.js';

export const RELAY_V4 = '10.210.1.1';
export const RELAY_V6 = 'fd00:210::1';
export const PEER_V4 = '10.210.1.2';
export const PEER_V6 = 'fd00:210::2';
export const PEER_MAC = '02:00:00:00:02:10';
/** Routes via `rd` in the relay namespace: a strict reverse-path check refuses these sources on `ra`. */
export const OTHER_ROUTE_V4 = '10.220.0.0/24';
export const OTHER_ROUTE_V6 = 'fd00:220::/64';

/** rp_filter modes the suite runs: the value written to conf/all and conf/ra. */
export type RpMode = 0 | 1 | 2;

export interface RawTarget {
  readonly mac: Buffer;
  readonly v4port: number;
  readonly v6port: number;
}

export interface RawFrame {
  readonly frame: Buffer;
  /** Sent through the socket with a virtio_net_hdr (CHECKSUM_PARTIAL when it says NEEDS_CSUM). */
  readonly vnet?: Buffer;
}

export interface RawCase {
  readonly name: string;
  readonly family: 4 | 6;
  /** Frames for copy `i` of the case (its payload carries the case name and i). */
  frames(t: RawTarget, payload: Buffer): RawFrame[];
  /** Payload bytes the subscriber must receive for the case, or undefined when the stack drops it. */
  delivered(payload: Buffer, rp: RpMode): Buffer | undefined;
}

/** Copies of each case: two, so duplicates and one-offs both show. */
export const COPIES = 2;

export function casePayload(name: string, i: number, size = 48): Buffer {
  const b = Buffer.alloc(size, 0x61 + (i % 26));
  b.write(`${name}#${i}|`, 0, 'latin1');
  return b;
}

/** The case and copy a received payload belongs to (its prefix), if any. */
export function caseOf(payload: Buffer): string | undefined {
  const m = /^([a-z0-9-]+#\d+)\|/.exec(payload.subarray(0, 64).toString('latin1'));
  return m?.[1];
}

const other = Buffer.from([0x02, 0, 0, 0, 0, 0x99]);
const big = 1301; // more than two of the program's 512-byte checksum pieces, odd

function spec(t: RawTarget, family: 4 | 6, payload: Buffer, over: Partial<UdpFrameSpec> = {}): UdpFrameSpec {
  return {
    family,
    srcMac: Buffer.from(PEER_MAC.split(':').map((x) => parseInt(x, 16))),
    dstMac: t.mac,
    src: family === 4 ? PEER_V4 : PEER_V6,
    dst: family === 4 ? RELAY_V4 : RELAY_V6,
    sport: 40000,
    dport: family === 4 ? t.v4port : t.v6port,
    payload,
    ...over,
  };
}

const deliver = (p: Buffer) => p;
const drop = () => undefined;

function one(name: string, family: 4 | 6, over: Partial<UdpFrameSpec>, delivered: RawCase['delivered']): RawCase {
  return { name, family, frames: (t, payload) => [{ frame: udpFrame(spec(t, family, payload, over)) }], delivered };
}

/** Cases whose outcome does not depend on rp_filter. */
export const RAW_CASES: readonly RawCase[] = [
  ...([4, 6] as const).flatMap((f): RawCase[] => {
    const v = `v${f}`;
    return [
      one(`${v}-valid`, f, {}, deliver),
      {
        name: `${v}-valid-big`,
        family: f,
        frames: (t, p) => [{ frame: udpFrame(spec(t, f, Buffer.concat([p, Buffer.alloc(big - p.length, 0x5a)]))) }],
        delivered: (p) => Buffer.concat([p, Buffer.alloc(big - p.length, 0x5a)]),
      },
      // IP length beyond the frame: ip_rcv drops it as truncated.
      one(`${v}-ip-len-long`, f, { ipLengthDelta: 40 }, drop),
      // Frame longer than the IP length: ip_rcv trims the tail, delivers the datagram.
      one(`${v}-ip-len-short`, f, { trailing: 24 }, deliver),
      // UDP length beyond the IP payload: udp_rcv drops it.
      one(`${v}-udp-len-long`, f, { udpLengthDelta: 10 }, drop),
      // UDP length short of the IP payload: udp_rcv trims to it (checksum over what is left).
      one(`${v}-udp-len-short`, f, { udpLengthDelta: -20 }, (p) => p.subarray(0, p.length - 20)),
      one(`${v}-udp-len-tiny`, f, { udpLengthDelta: -(8 + 48) + 4 }, drop),
      one(`${v}-bad-udp-csum`, f, { udpChecksum: 'bad' }, drop),
      {
        name: `${v}-bad-udp-csum-big`,
        family: f,
        // The flipped bit is in the last of the program's checksum pieces.
        frames: (t, p) => [{ frame: udpFrame(spec(t, f, Buffer.concat([p, Buffer.alloc(big - p.length, 0x5a)]), { udpChecksum: 'bad', badAt: big - 3 })) }],
        delivered: drop,
      },
      // No checksum: allowed in IPv4, refused by IPv6 sockets (RFC 8200; no UDP_NO_CHECK6_RX).
      one(`${v}-zero-udp-csum`, f, { udpChecksum: 'zero' }, f === 4 ? deliver : drop),
      // What an offloading sender leaves in the field, on a frame that is not CHECKSUM_PARTIAL: wrong.
      one(`${v}-seed-udp-csum`, f, { udpChecksum: 'seed' }, drop),
      // CHECKSUM_PARTIAL (virtio NEEDS_CSUM): the stack trusts it, whatever the field holds.
      {
        name: `${v}-partial`,
        family: f,
        frames: (t, p) => [{ frame: udpFrame(spec(t, f, p, { udpChecksum: 'seed' })), vnet: vnetNeedsCsum(f) }],
        delivered: deliver,
      },
      {
        name: `${v}-partial-odd-field`,
        family: f,
        frames: (t, p) => [{ frame: udpFrame(spec(t, f, p, { udpChecksum: 0x1234 })), vnet: vnetNeedsCsum(f) }],
        delivered: deliver,
      },
      {
        name: `${v}-fragments`,
        family: f,
        frames: (t, p) =>
          udpFragments(spec(t, f, Buffer.concat([p, Buffer.alloc(900, 0x33)])), 512, 0x4000 + p.readUInt8(p.indexOf('#') + 1)).map((frame) => ({ frame })),
        delivered: (p) => Buffer.concat([p, Buffer.alloc(900, 0x33)]),
      },
      // A frame for another link-layer address: ip_rcv / ipv6_rcv drop PACKET_OTHERHOST.
      one(`${v}-other-host`, f, { dstMac: other }, drop),
      // Tagged for a VLAN this host has no device for: the stack marks it PACKET_OTHERHOST too.
      one(`${v}-vlan-unknown`, f, { vlan: 99 }, drop),
    ];
  }),
  one('v4-bad-ip-csum', 4, { badIpChecksum: true }, drop),
  one('v4-options', 4, { ipOptions: Buffer.from([1, 1, 1, 0]) }, deliver),
  // Martian sources (ip_route_input_slow), and our own address (accept_local is 0).
  one('v4-src-local', 4, { src: RELAY_V4 }, drop),
  one('v4-src-loopback', 4, { src: '127.0.0.1' }, drop),
  one('v4-src-zero', 4, { src: '0.0.0.0' }, drop),
  one('v4-src-multicast', 4, { src: '224.0.0.9' }, drop),
  one('v4-src-broadcast', 4, { src: '255.255.255.255' }, drop),
  // ip6_rcv_core's checks. (An IPv4-mapped source is refused by TCP only: UDP takes it.)
  one('v6-src-v4mapped', 6, { src: '::ffff:10.210.1.2' }, deliver),
  one('v6-src-multicast', 6, { src: 'ff02::1' }, drop),
  one('v6-src-loopback', 6, { src: '::1' }, drop),
];

/** Cases whose outcome is the host's reverse-path filter's (IPv4 rp_filter; IPv6 has none). */
export const RP_CASES: readonly RawCase[] = [
  one('v4-rp-control', 4, {}, deliver),
  // Routed through another interface: strict refuses, loose and off accept.
  one('v4-src-other-route', 4, { src: '10.220.0.5' }, (p, rp) => (rp === 1 ? undefined : p)),
  // No route back at all: strict and loose refuse, off accepts.
  one('v4-src-no-route', 4, { src: '10.230.0.5' }, (p, rp) => (rp === 0 ? p : undefined)),
  one('v6-src-other-route', 6, { src: 'fd00:220::5' }, deliver),
  one('v6-src-no-route', 6, { src: 'fd00:230::5' }, deliver),
];

export function caseByName(name: string): RawCase {
  const c = [...RAW_CASES, ...RP_CASES].find((x) => x.name === name);
  if (!c) throw new Error(`no raw case '${name}'`);
  return c;
}

/** The frames of every copy of `cases`, in sending order. */
export function framesFor(cases: readonly RawCase[], t: RawTarget): RawFrame[] {
  return cases.flatMap((c) => Array.from({ length: COPIES }, (_, i) => c.frames(t, casePayload(c.name, i))).flat());
}
