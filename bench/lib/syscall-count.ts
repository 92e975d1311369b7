/**
 * Counts the send system calls (sendto, sendmsg, sendmmsg) one process
 * makes, exactly: an eBPF program on the sys_enter raw tracepoint, built for
 * that process's tgid, adds to a per-CPU counter. For the sender bench's
 * "system calls per packet", whatever library (libuv, our FFI) makes them.
 */
import { Assembler } from './sink-prog.js';
import { BPF_MAP_TYPE, BPF_PROG_TYPE_RAW_TRACEPOINT, closeFd, mapCreate, mapLookup, possibleCpus, progLoad, rawTracepointOpen } from '../../src/sys/bpf.js';

const HELPER_GET_CURRENT_PID_TGID = 14;

/** sendto, sendmsg, sendmmsg by architecture. */
function sendSyscalls(): number[] {
  switch (process.arch) {
    case 'x64':
      return [44, 46, 307];
    case 'arm64':
    case 'riscv64':
    case 'loong64':
      return [206, 211, 269];
    default:
      throw new Error(`send syscall numbers unknown for ${process.arch}`);
  }
}

function program(map: number, tgid: number): Uint8Array {
  const a = new Assembler().mov('r6', 'r1').call(HELPER_GET_CURRENT_PID_TGID).rsh('r0', 32).jne('r0', tgid, 'out').ldxdw('r7', 'r6', 8); // args[1]: the syscall number
  for (const nr of sendSyscalls()) a.jeq('r7', nr, 'count');
  a.ja('out').label('count').lookupFirst(map, 'out').ldxdw('r1', 'r0', 0).add('r1', 1).stxdw('r0', 0, 'r1').label('out').mov('r0', 0).exit();
  return a.assemble();
}

export class SendSyscallCounter {
  readonly #map: number;
  readonly #fds: number[];
  readonly #cpus: number;

  private constructor(map: number, fds: number[], cpus: number) {
    this.#map = map;
    this.#fds = fds;
    this.#cpus = cpus;
  }

  static open(tgid: number): SendSyscallCounter {
    const cpus = possibleCpus();
    const map = mapCreate({ type: BPF_MAP_TYPE.PERCPU_ARRAY, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0, name: 'bench_sendcalls' });
    const fds = [map];
    try {
      const prog = progLoad({
        type: BPF_PROG_TYPE_RAW_TRACEPOINT,
        insns: program(map, tgid),
        license: 'Dual MIT/GPL',
        name: 'bench_sendcalls',
        expectedAttachType: 0,
      });
      fds.push(prog, rawTracepointOpen('sys_enter', prog));
    } catch (err) {
      for (const fd of fds) closeFd(fd);
      throw err;
    }
    return new SendSyscallCounter(map, fds, cpus);
  }

  count(): number {
    const v = mapLookup(this.#map, new Uint8Array(4), 8 * this.#cpus, 'bench_sendcalls');
    if (!v) return 0;
    const view = new DataView(v.buffer, v.byteOffset);
    let n = 0;
    for (let c = 0; c < this.#cpus; c++) n += Number(view.getBigUint64(c * 8, true));
    return n;
  }

  close(): void {
    for (const fd of [...this.#fds].reverse()) closeFd(fd);
  }
}
