/**
 * The bench sink's eBPF program (tcx ingress of the sink's interface),
 * assembled here from a few dozen instructions: the program is too small to
 * be worth a C source, clang and an ELF loader, and the bench must not depend
 * on the kernel tier's object file, which changes with the kernel tier.
 *
 * Per packet: IPv4 UDP to a destination port in [cfg.first, cfg.last] adds
 * to counts[SUBSCRIBERS], any other IPv4 UDP to counts[OTHER]; both are
 * dropped (TCX_DROP). Everything else (ARP, IPv6 with its neighbour
 * discovery, ICMP) goes on to the stack (TCX_NEXT), so the link keeps
 * resolving neighbours. A count is {packets, bytes} where a packet is one
 * skb (a GSO or GRO buffer counts once) and bytes are skb->len minus the
 * Ethernet header, i.e. from the IPv4 header on, as nftables counted them
 * (see datagrams() in sink.ts for why bytes).
 *
 * It also measures the longest run of consecutive packets to one
 * subscriber port, as a switch port behind the sink would see them (issue
 * #5's interleaving). A GSO buffer that crossed the veth unsegmented counts
 * as its gso_segs packets (the NIC would send them back to back).
 *
 * Map layouts (host byte order):
 *   cfg    ARRAY, 1 entry:         u32 first, u32 last (empty when first > last)
 *   counts PERCPU_ARRAY, 2 entries: u64 packets, u64 bytes
 *   runs   ARRAY, 1 entry:         u32 last port, u32 current run, u32 longest run, u32 pad
 *          (shared, not per CPU: a sender that moves between CPUs still
 *          makes one sequence; two CPUs receiving at the same instant could
 *          race on it, which the sender suite avoids: its sender is pinned
 *          and the sink's receive runs on the sender's CPU)
 */

export const CFG_VALUE_SIZE = 8;
export const COUNTS_VALUE_SIZE = 16;
export const RUNS_VALUE_SIZE = 16;
export const COUNT_SUBSCRIBERS = 0;
export const COUNT_OTHER = 1;

const TCX_NEXT = -1;
const TCX_DROP = 2;
const HELPER_MAP_LOOKUP_ELEM = 1;
const BPF_PSEUDO_MAP_FD = 1;

// struct __sk_buff offsets.
const SKB_LEN = 0;
const SKB_DATA = 76;
const SKB_DATA_END = 80;
const SKB_GSO_SEGS = 164;

const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
const IPPROTO_UDP = 17;
const IPV4_MIN_HLEN = 20;
const UDP_HLEN = 8;

// ---------------------------------------------------------------------------
// A minimal assembler: one method per instruction form used below, jumps to
// named labels (resolved in assemble()), so the program reads like a listing.

export type Reg = 'r0' | 'r1' | 'r2' | 'r3' | 'r4' | 'r5' | 'r6' | 'r7' | 'r8' | 'r9' | 'r10';

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** Jump target, resolved to `off` in assemble(). */
  target?: string;
}

// Opcode parts (linux/bpf.h, linux/bpf_common.h).
const LD = 0x00,
  LDX = 0x01,
  ST = 0x02,
  STX = 0x03,
  ALU = 0x04,
  JMP = 0x05,
  ALU64 = 0x07;
const W = 0x00,
  H = 0x08,
  B = 0x10,
  DW = 0x18;
const IMM = 0x00,
  MEM = 0x60;
const K = 0x00,
  X = 0x08;
const ADD = 0x00,
  SUB = 0x10,
  AND = 0x50,
  LSH = 0x60,
  RSH = 0x70,
  MOV = 0xb0,
  END = 0xd0,
  TO_BE = 0x08;
const JA = 0x00,
  JEQ = 0x10,
  JGT = 0x20,
  JNE = 0x50,
  JLT = 0xa0,
  CALL = 0x80,
  EXIT = 0x90;

const regNo = (r: Reg): number => Number(r.slice(1));

export class Assembler {
  readonly #insns: Insn[] = [];
  readonly #labels = new Map<string, number>();

  #emit(code: number, dst: Reg | 0, src: Reg | 0, off: number, imm: number, target?: string): this {
    this.#insns.push({ code, dst: dst === 0 ? 0 : regNo(dst), src: src === 0 ? 0 : regNo(src), off, imm, ...(target ? { target } : {}) });
    return this;
  }

  /** ALU64 op with a register or an immediate source. */
  #alu(op: number, dst: Reg, src: Reg | number): this {
    return typeof src === 'string' ? this.#emit(ALU64 | op | X, dst, src, 0, 0) : this.#emit(ALU64 | op | K, dst, 0, 0, src);
  }

  /** Conditional jump comparing dst with a register or an immediate (64-bit, unsigned). */
  #jump(op: number, dst: Reg, src: Reg | number, target: string): this {
    return typeof src === 'string' ? this.#emit(JMP | op | X, dst, src, 0, 0, target) : this.#emit(JMP | op | K, dst, 0, 0, src, target);
  }

  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`label '${name}' defined twice`);
    this.#labels.set(name, this.#insns.length);
    return this;
  }

  mov(dst: Reg, src: Reg | number): this {
    return this.#alu(MOV, dst, src);
  }
  add(dst: Reg, src: Reg | number): this {
    return this.#alu(ADD, dst, src);
  }
  sub(dst: Reg, src: Reg | number): this {
    return this.#alu(SUB, dst, src);
  }
  and(dst: Reg, src: Reg | number): this {
    return this.#alu(AND, dst, src);
  }
  lsh(dst: Reg, src: Reg | number): this {
    return this.#alu(LSH, dst, src);
  }
  rsh(dst: Reg, src: Reg | number): this {
    return this.#alu(RSH, dst, src);
  }
  /** dst = the low 16 bits of dst read as big-endian (network order to host order). */
  be16(dst: Reg): this {
    return this.#emit(ALU | END | TO_BE, dst, 0, 0, 16);
  }

  ldxb(dst: Reg, src: Reg, off: number): this {
    return this.#emit(LDX | MEM | B, dst, src, off, 0);
  }
  ldxh(dst: Reg, src: Reg, off: number): this {
    return this.#emit(LDX | MEM | H, dst, src, off, 0);
  }
  ldxw(dst: Reg, src: Reg, off: number): this {
    return this.#emit(LDX | MEM | W, dst, src, off, 0);
  }
  ldxdw(dst: Reg, src: Reg, off: number): this {
    return this.#emit(LDX | MEM | DW, dst, src, off, 0);
  }
  /** *(u32 *)(dst + off) = imm */
  stw(dst: Reg, off: number, imm: number): this {
    return this.#emit(ST | MEM | W, dst, 0, off, imm);
  }
  stxw(dst: Reg, off: number, src: Reg): this {
    return this.#emit(STX | MEM | W, dst, src, off, 0);
  }
  stxdw(dst: Reg, off: number, src: Reg): this {
    return this.#emit(STX | MEM | DW, dst, src, off, 0);
  }
  /** *(u64 *)(dst + off) = imm (sign-extended) */
  stdw(dst: Reg, off: number, imm: number): this {
    return this.#emit(ST | MEM | DW, dst, 0, off, imm);
  }
  /** dst = the map behind `fd` (ld_imm64, two instruction slots; the kernel swaps in the map pointer). */
  ldMapFd(dst: Reg, fd: number): this {
    this.#emit(LD | IMM | DW, dst, 0, 0, fd);
    this.#insns[this.#insns.length - 1]!.src = BPF_PSEUDO_MAP_FD;
    return this.#emit(0, 0, 0, 0, 0);
  }

  /**
   * r0 = bpf_map_lookup_elem(map, &(u32)0), jumping to `ifNull` when the
   * entry is missing (the verifier demands the check). Uses r1, r2 and the
   * 4 bytes below the frame pointer.
   */
  lookupFirst(map: number, ifNull: string): this {
    return this.stw('r10', -4, 0).mov('r2', 'r10').add('r2', -4).ldMapFd('r1', map).call(HELPER_MAP_LOOKUP_ELEM).jeq('r0', 0, ifNull);
  }

  ja(target: string): this {
    return this.#emit(JMP | JA, 0, 0, 0, 0, target);
  }
  jeq(dst: Reg, src: Reg | number, target: string): this {
    return this.#jump(JEQ, dst, src, target);
  }
  jne(dst: Reg, src: Reg | number, target: string): this {
    return this.#jump(JNE, dst, src, target);
  }
  jgt(dst: Reg, src: Reg | number, target: string): this {
    return this.#jump(JGT, dst, src, target);
  }
  jlt(dst: Reg, src: Reg | number, target: string): this {
    return this.#jump(JLT, dst, src, target);
  }
  call(helper: number): this {
    return this.#emit(JMP | CALL, 0, 0, 0, helper);
  }
  exit(): this {
    return this.#emit(JMP | EXIT, 0, 0, 0, 0);
  }

  /** Instruction count (ld_imm64 counts twice, as for the kernel). */
  get length(): number {
    return this.#insns.length;
  }

  assemble(): Uint8Array {
    const out = new Uint8Array(this.#insns.length * 8);
    const v = new DataView(out.buffer);
    this.#insns.forEach((insn, i) => {
      let off = insn.off;
      if (insn.target !== undefined) {
        const at = this.#labels.get(insn.target);
        if (at === undefined) throw new Error(`undefined label '${insn.target}'`);
        off = at - (i + 1);
      }
      const o = i * 8;
      v.setUint8(o, insn.code);
      v.setUint8(o + 1, (insn.src << 4) | insn.dst);
      v.setInt16(o + 2, off, true);
      v.setInt32(o + 4, insn.imm, true);
    });
    return out;
  }
}

// ---------------------------------------------------------------------------

/** The program's instructions, with the two maps' fds built in. */
export function sinkProgram(maps: { cfg: number; counts: number; runs: number }): Uint8Array {
  // r6 = ctx and r7 = packet cursor, r8 = data_end and r9 = dport/key
  // survive helper calls (callee-saved); r1-r5 do not.
  const a = new Assembler()
    .mov('r6', 'r1')
    .ldxw('r7', 'r6', SKB_DATA)
    .ldxw('r8', 'r6', SKB_DATA_END)
    // Ethernet + a minimal IPv4 header in the linear data, else not ours.
    .mov('r2', 'r7')
    .add('r2', ETH_HLEN + IPV4_MIN_HLEN)
    .jgt('r2', 'r8', 'pass')
    .ldxh('r2', 'r7', 12)
    .be16('r2')
    .jne('r2', ETH_P_IP, 'pass')
    .ldxb('r2', 'r7', ETH_HLEN + 9)
    .jne('r2', IPPROTO_UDP, 'pass')
    // UDP from here on: counted and dropped. A non-first fragment has no
    // UDP header (nft's `udp dport` does not match it either).
    .ldxh('r2', 'r7', ETH_HLEN + 6)
    .be16('r2')
    .and('r2', 0x1fff)
    .jne('r2', 0, 'other')
    // The UDP header starts ihl * 4 bytes into the IPv4 header.
    .ldxb('r2', 'r7', ETH_HLEN)
    .and('r2', 0x0f)
    .lsh('r2', 2)
    .jlt('r2', IPV4_MIN_HLEN, 'other')
    .add('r7', 'r2')
    .mov('r2', 'r7')
    .add('r2', ETH_HLEN + UDP_HLEN)
    .jgt('r2', 'r8', 'other')
    .ldxh('r9', 'r7', ETH_HLEN + 2)
    .be16('r9')
    // Port range: cfg[0] = {first, last}.
    .lookupFirst(maps.cfg, 'other')
    .ldxw('r3', 'r0', 0)
    .ldxw('r4', 'r0', 4)
    .jlt('r9', 'r3', 'other')
    .jgt('r9', 'r4', 'other')
    // Runs: r9 = this packet's port; r5 = how many packets it stands for.
    .lookupFirst(maps.runs, 'subscriber')
    .ldxw('r5', 'r6', SKB_GSO_SEGS)
    .jne('r5', 0, 'segs')
    .mov('r5', 1)
    .label('segs')
    .ldxw('r3', 'r0', 0)
    .ldxw('r4', 'r0', 4)
    .jne('r3', 'r9', 'new_run')
    .add('r4', 'r5')
    .ja('run')
    .label('new_run')
    .mov('r4', 'r5')
    .stxw('r0', 0, 'r9')
    .label('run')
    .stxw('r0', 4, 'r4')
    .ldxw('r3', 'r0', 8)
    .jlt('r4', 'r3', 'subscriber')
    .stxw('r0', 8, 'r4')
    .label('subscriber')
    .mov('r9', COUNT_SUBSCRIBERS)
    .ja('count')
    .label('other')
    .mov('r9', COUNT_OTHER)
    .label('count')
    // counts[r9] (this CPU's slot; no atomics needed) += {1, len - ETH_HLEN}.
    .stxw('r10', -4, 'r9')
    .mov('r2', 'r10')
    .add('r2', -4)
    .ldMapFd('r1', maps.counts)
    .call(HELPER_MAP_LOOKUP_ELEM)
    .jeq('r0', 0, 'drop')
    .ldxdw('r1', 'r0', 0)
    .add('r1', 1)
    .stxdw('r0', 0, 'r1')
    .ldxw('r1', 'r6', SKB_LEN)
    .add('r1', -ETH_HLEN)
    .ldxdw('r2', 'r0', 8)
    .add('r2', 'r1')
    .stxdw('r0', 8, 'r2')
    .label('drop')
    .mov('r0', TCX_DROP)
    .exit()
    .label('pass')
    .mov('r0', TCX_NEXT)
    .exit();
  return a.assemble();
}
