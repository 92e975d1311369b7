/**
 * BPF_PROG_TEST_RUN in the kernel's "live frames" mode for XDP programs
 * (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+): the kernel builds `repeat`
 * frames from one template, runs the program on each as if it had been
 * received on `ifindex`, and carries out its verdict for real: XDP_TX and
 * XDP_REDIRECT transmit the frame (through the device's ndo_xdp_xmit).
 * It is how xdp-trafficgen generates packets, and what the benchmarks use
 * as a packet generator where the kernel's pktgen is not available
 * (bench/tools/xdp-live-gen.ts). The calling thread does the work, in
 * kernel mode, until `repeat` frames are done or a signal arrives (EINTR).
 */
import { NativeRegion } from './memory.js';
import { bpf, newAttr, regionOf } from './bpf-call.js';
import { BPF_PROG_TYPE_XDP, BPF_XDP, closeFd, progLoad } from './bpf.js';

/** include/uapi/linux/bpf.h */
export const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;
/** struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex (u32 each). */
const XDP_MD_SIZE = 24;

export interface LiveFrames {
  /** An XDP program fd (its verdict decides what happens to every frame). */
  readonly progFd: number;
  /** The frame from the Ethernet header on. */
  readonly frame: Uint8Array;
  /** The interface the frames are "received" on (XDP_TX sends them out of it). */
  readonly ifindex: number;
  readonly repeat: number;
  /** Frames per batch inside the kernel (0: the kernel's default, 64). */
  readonly batchSize?: number;
}

/** Reusable attr for one template (the regions must outlive every call). */
export class LiveFrameRunner {
  readonly #attr: NativeRegion;
  readonly #data: NativeRegion;
  readonly #ctx: NativeRegion;

  constructor(spec: LiveFrames) {
    this.#data = regionOf(spec.frame);
    this.#ctx = new NativeRegion(XDP_MD_SIZE);
    const c = this.#ctx.view;
    c.setUint32(0, 0, true); // data
    c.setUint32(4, spec.frame.length, true); // data_end
    c.setUint32(12, spec.ifindex, true); // ingress_ifindex
    this.#attr = newAttr();
    const v = this.#attr.view;
    v.setUint32(0, spec.progFd, true);
    v.setUint32(8, spec.frame.length, true); // data_size_in
    this.#attr.setPointer(16, this.#data.address); // data_in
    v.setUint32(32, spec.repeat, true);
    v.setUint32(40, XDP_MD_SIZE, true); // ctx_size_in
    this.#attr.setPointer(48, this.#ctx.address); // ctx_in
    v.setUint32(64, BPF_F_TEST_XDP_LIVE_FRAMES, true);
    v.setUint32(72, spec.batchSize ?? 0, true);
  }

  /** Runs `repeat` frames; returns the kernel's duration field (ns per frame, averaged). */
  run(): number {
    bpf('PROG_TEST_RUN', this.#attr, () => 'XDP live frames');
    return this.#attr.view.getUint32(36, true);
  }
}

/**
 * Why this kernel will not run live frames, or undefined if it does: one
 * frame through a program that returns XDP_DROP, "received" on loopback, so
 * nothing is sent. Some kernels refuse the mode to root too (seen: EPERM on
 * a 6.18 VM whose lockdown is "integrity" and whose security modules include
 * bpf; which of them refuses was not found out), and a caller (the xdp
 * suite's generator, its test) must say so rather than fail.
 */
export function liveFramesRefusal(): string | undefined {
  // r0 = XDP_DROP (1); exit
  const insns = new Uint8Array([0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
  let prog = -1;
  try {
    prog = progLoad({ type: BPF_PROG_TYPE_XDP, insns, license: 'Dual MIT/GPL', name: 'live_probe', expectedAttachType: BPF_XDP });
    const frame = new Uint8Array(64);
    frame[12] = 0x08; // an IPv4 ethertype: the frame is dropped by the program anyway
    new LiveFrameRunner({ progFd: prog, frame, ifindex: 1, repeat: 1 }).run();
    return undefined;
  } catch (err) {
    return `this kernel refuses BPF_PROG_TEST_RUN live frames (${err instanceof Error ? err.message : String(err)})`;
  } finally {
    if (prog >= 0) closeFd(prog);
  }
}
