/**
 * Exact busy time of a core, softirq included, on kernels whose own
 * accounting cannot see it.
 *
 * With tick-based accounting (no CONFIG_IRQ_TIME_ACCOUNTING) and NO_HZ idle,
 * the softirq work that an idle core does when an interrupt wakes it runs
 * while its tick is stopped and is charged to idle: in /proc/stat, and in
 * cpuidle residency too (the handler runs inside the halt). That is where
 * every relay's receive path and all of the kernel tier's work happen when
 * the relay's core is otherwise idle. So busy time is measured as the sum
 * of two exact clocks, kept per CPU by three small eBPF programs on raw
 * tracepoints (assembled below):
 *
 *   - tasks: at every sched_switch, the time since the previous switch is
 *     added if the task leaving (the current one) is not the idle task
 *     (pid 0); softirq work that interrupts a task is inside its time;
 *   - softirq that interrupts the idle task: softirq_entry records the time
 *     when the current task is idle, softirq_exit adds the difference.
 *
 * A third clock sums NET_RX softirq time in any context: in the sender
 * suite that is the sink's receive path (a veth runs the receiving side on
 * the sending CPU), which is the receiving host's work, not the sender's.
 *
 * A task's running period counts when it ends, so readings are exact when
 * the core's task is the idle one, as at the edges of a trial (before the
 * generator starts and after the drain); each reading says how long ago the
 * core last switched (`sinceSwitchS`), the period it cannot yet classify. Hard-interrupt handlers in idle (a
 * few µs per wake-up) are not counted. (/proc/schedstat would give task
 * time, but needs CONFIG_SCHEDSTATS, which this kernel lacks.)
 */
import { Assembler } from './sink-prog.js';
import { BPF_MAP_TYPE, BPF_PROG_TYPE_RAW_TRACEPOINT, closeFd, mapCreate, mapLookup, possibleCpus, progLoad, rawTracepointOpen } from '../../src/sys/bpf.js';

const HELPER_KTIME_GET_NS = 5;
const HELPER_GET_CURRENT_PID_TGID = 14;
/**
 * Per-CPU value: u64 last switch, u64 task ns, u64 idle softirq start
 * (0 = none), u64 idle softirq ns, u64 NET_RX start (0 = none), u64 NET_RX ns.
 */
const VALUE_SIZE = 48;
const LAST_SWITCH = 0;
const TASK_NS = 8;
const SIRQ_START = 16;
const SIRQ_NS = 24;
const NETRX_START = 32;
const NETRX_NS = 40;
/** include/linux/interrupt.h: NET_RX_SOFTIRQ. */
const NET_RX_SOFTIRQ = 3;

/** r6 = &clock[0] for this CPU, or exit. */
function lookupClock(a: Assembler, map: number): Assembler {
  return a.lookupFirst(map, 'out').mov('r6', 'r0');
}

/** sched_switch: the period since the last switch was a task's unless the one leaving is idle. */
export function switchProgram(map: number): Uint8Array {
  const a = new Assembler();
  lookupClock(a, map)
    .call(HELPER_KTIME_GET_NS)
    .mov('r7', 'r0')
    .ldxdw('r8', 'r6', LAST_SWITCH)
    .stxdw('r6', LAST_SWITCH, 'r7')
    .jeq('r8', 0, 'out')
    .call(HELPER_GET_CURRENT_PID_TGID)
    .lsh('r0', 32) // the low half is the pid; 0 = idle
    .jeq('r0', 0, 'out')
    .sub('r7', 'r8')
    .ldxdw('r1', 'r6', TASK_NS)
    .add('r1', 'r7')
    .stxdw('r6', TASK_NS, 'r1')
    .label('out')
    .mov('r0', 0)
    .exit();
  return a.assemble();
}

/**
 * softirq_entry(vec): remember the time for NET_RX (any context), and for
 * any softirq that interrupted the idle task (pid 0). Softirqs do not nest
 * on a CPU, so one start slot each is enough.
 */
export function entryProgram(map: number): Uint8Array {
  const a = new Assembler().mov('r9', 'r1'); // raw tracepoint ctx: u64 args[]; args[0] = vec
  lookupClock(a, map)
    .call(HELPER_KTIME_GET_NS)
    .mov('r7', 'r0')
    .ldxdw('r8', 'r9', 0)
    .jne('r8', NET_RX_SOFTIRQ, 'idle')
    .stxdw('r6', NETRX_START, 'r7')
    .label('idle')
    .call(HELPER_GET_CURRENT_PID_TGID)
    .lsh('r0', 32)
    .jne('r0', 0, 'out')
    .stxdw('r6', SIRQ_START, 'r7')
    .label('out')
    .mov('r0', 0)
    .exit();
  return a.assemble();
}

/**
 * If the slot at `start` holds an entry time, add now (r7) minus it to the
 * total at `total` and clear the slot; then go on at `next`. r6 = the clock.
 */
function closeInterval(a: Assembler, start: number, total: number, next: string): Assembler {
  return a
    .ldxdw('r8', 'r6', start)
    .jeq('r8', 0, next)
    .mov('r1', 'r7')
    .sub('r1', 'r8')
    .ldxdw('r2', 'r6', total)
    .add('r2', 'r1')
    .stxdw('r6', total, 'r2')
    .stdw('r6', start, 0)
    .label(next);
}

/** softirq_exit: add the time since each recorded entry to its total. */
export function exitProgram(map: number): Uint8Array {
  const a = new Assembler();
  lookupClock(a, map).call(HELPER_KTIME_GET_NS).mov('r7', 'r0');
  closeInterval(a, NETRX_START, NETRX_NS, 'idle');
  closeInterval(a, SIRQ_START, SIRQ_NS, 'out');
  return a.mov('r0', 0).exit().assemble();
}

export class CoreClock {
  readonly #map: number;
  readonly #fds: readonly number[];
  readonly #cpus: number;

  private constructor(map: number, fds: readonly number[], cpus: number) {
    this.#map = map;
    this.#fds = fds;
    this.#cpus = cpus;
  }

  /** Loads and attaches the three programs (root). */
  static open(): CoreClock {
    const cpus = possibleCpus();
    const map = mapCreate({ type: BPF_MAP_TYPE.PERCPU_ARRAY, keySize: 4, valueSize: VALUE_SIZE, maxEntries: 1, flags: 0, name: 'bench_irqclk' });
    const fds: number[] = [map];
    try {
      for (const [tp, insns] of [
        ['sched_switch', switchProgram(map)],
        ['softirq_entry', entryProgram(map)],
        ['softirq_exit', exitProgram(map)],
      ] as const) {
        const prog = progLoad({ type: BPF_PROG_TYPE_RAW_TRACEPOINT, insns, license: 'Dual MIT/GPL', name: `bench_${tp}`, expectedAttachType: 0 });
        fds.push(prog);
        fds.push(rawTracepointOpen(tp, prog));
      }
    } catch (err) {
      for (const fd of fds) closeFd(fd);
      throw err;
    }
    return new CoreClock(map, fds, cpus);
  }

  /**
   * Seconds of `cpu` since open(): busy (task time plus softirq that
   * interrupted its idle task), the idle part of that, and NET_RX softirq
   * time in any context (part of busy); and the time since the core's last
   * context switch, which is in neither figure yet: a task running all along
   * (busy time still to come) or the idle task (none). bpf_ktime_get_ns and
   * process.hrtime are both CLOCK_MONOTONIC.
   */
  busyS(cpu: number): { busyS: number; idleSoftirqS: number; netRxS: number; sinceSwitchS: number } {
    const v = mapLookup(this.#map, new Uint8Array(4), VALUE_SIZE * this.#cpus, 'bench_irqclk');
    const now = process.hrtime.bigint();
    if (!v) return { busyS: 0, idleSoftirqS: 0, netRxS: 0, sinceSwitchS: 0 };
    const view = new DataView(v.buffer, v.byteOffset);
    const raw = (field: number) => view.getBigUint64(cpu * VALUE_SIZE + field, true);
    const at = (field: number) => Number(raw(field)) / 1e9;
    const last = raw(LAST_SWITCH);
    const sinceSwitchS = last === 0n || last > now ? 0 : Number(now - last) / 1e9;
    return { busyS: at(TASK_NS) + at(SIRQ_NS), idleSoftirqS: at(SIRQ_NS), netRxS: at(NETRX_NS), sinceSwitchS };
  }

  close(): void {
    for (const fd of [...this.#fds].reverse()) closeFd(fd);
  }
}
