/**
 * The resident half of the bench sink (bench/lib/sink.ts), run inside the
 * sink namespace: creates the maps, loads bench/lib/sink-prog.ts and attaches
 * it at tcx ingress of the interface, then serves the harness over stdin.
 * It is a process (not a one-shot command) because the program stays
 * attached only while someone holds the link fd: when this process exits,
 * however it exits, the program detaches and nothing is left behind.
 *
 *   --ifname NAME   interface inside this namespace   default sink0
 *
 * stdout, first: {"event":"ready","ifindex":N,"insns":N}
 * stdin, one command a line, one reply line each:
 *   ports FIRST COUNT   count ports [FIRST, FIRST+COUNT-1] as subscribers -> ok
 *   read                -> {"subscribers":N,"subscriberBytes":N,"other":N} (totals over CPUs)
 *   runs                -> {"longestRun":N} (longest run of packets to one subscriber port since the last reset)
 *   runs reset          -> ok
 *   anything else       -> error <why>
 * Exits 0 when stdin closes or on SIGTERM/SIGINT.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import {
  BPF_MAP_TYPE,
  BPF_PROG_TYPE_SCHED_CLS,
  BPF_TCX_INGRESS,
  closeFd,
  mapCreate,
  mapLookup,
  mapUpdate,
  possibleCpus,
  progLoad,
  tcxLinkCreate,
} from '../../src/sys/bpf.js';
import { CFG_VALUE_SIZE, COUNTS_VALUE_SIZE, COUNT_OTHER, COUNT_SUBSCRIBERS, RUNS_VALUE_SIZE, sinkProgram } from '../lib/sink-prog.js';

const args = process.argv.slice(2);
const at = args.indexOf('--ifname');
const ifname = at >= 0 && args[at + 1] ? args[at + 1]! : 'sink0';

function key(i: number): Uint8Array {
  const k = new Uint8Array(4);
  new DataView(k.buffer).setUint32(0, i, true);
  return k;
}

function setRange(cfg: number, first: number, last: number): void {
  const v = new Uint8Array(CFG_VALUE_SIZE);
  const view = new DataView(v.buffer);
  // Host byte order: the program compares against the port after be16.
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  view.setUint32(0, first, le);
  view.setUint32(4, last, le);
  mapUpdate(cfg, key(0), v, 0, 'cfg');
}

const fds: number[] = [];
let cfg: number;
let counts: number;
let runs: number;
let cpus: number;
try {
  // sysfs as seen in this namespace (ip netns exec mounts its own /sys).
  const ifindex = Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim());
  cfg = mapCreate({ type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: CFG_VALUE_SIZE, maxEntries: 1, flags: 0, name: 'sink_cfg' });
  fds.push(cfg);
  counts = mapCreate({ type: BPF_MAP_TYPE.PERCPU_ARRAY, keySize: 4, valueSize: COUNTS_VALUE_SIZE, maxEntries: 2, flags: 0, name: 'sink_counts' });
  fds.push(counts);
  runs = mapCreate({ type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: RUNS_VALUE_SIZE, maxEntries: 1, flags: 0, name: 'sink_runs' });
  fds.push(runs);
  cpus = possibleCpus();
  setRange(cfg, 1, 0); // empty until the first `ports`: all UDP counts as other
  const insns = sinkProgram({ cfg, counts, runs });
  const prog = progLoad({ type: BPF_PROG_TYPE_SCHED_CLS, insns, license: 'Dual MIT/GPL', name: 'bench_sink', expectedAttachType: BPF_TCX_INGRESS });
  fds.push(prog);
  fds.push(tcxLinkCreate(prog, ifindex, BPF_TCX_INGRESS, `tcx ingress of ${ifname} (ifindex ${ifindex})`));
  process.stdout.write(`${JSON.stringify({ event: 'ready', ifindex, insns: insns.length / 8 })}\n`);
} catch (err) {
  process.stderr.write(`sink-counter: ${(err as Error).message}\n`);
  process.exit(1);
}

function read(): { subscribers: number; subscriberBytes: number; other: number } {
  const sum = (i: number): { packets: bigint; bytes: bigint } => {
    const raw = mapLookup(counts, key(i), COUNTS_VALUE_SIZE * cpus, 'counts');
    let packets = 0n;
    let bytes = 0n;
    if (raw) {
      const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      for (let c = 0; c < cpus; c++) {
        packets += v.getBigUint64(c * COUNTS_VALUE_SIZE, true);
        bytes += v.getBigUint64(c * COUNTS_VALUE_SIZE + 8, true);
      }
    }
    return { packets, bytes };
  };
  const s = sum(COUNT_SUBSCRIBERS);
  const o = sum(COUNT_OTHER);
  return { subscribers: Number(s.packets), subscriberBytes: Number(s.bytes), other: Number(o.packets) };
}

function longestRun(): number {
  const raw = mapLookup(runs, key(0), RUNS_VALUE_SIZE, 'runs');
  return raw ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(8, true) : 0;
}

function handle(line: string): string {
  const [cmd, ...rest] = line.trim().split(/\s+/);
  if (cmd === 'read') return JSON.stringify(read());
  if (cmd === 'runs' && rest.length === 0) return JSON.stringify({ longestRun: longestRun() });
  if (cmd === 'runs' && rest[0] === 'reset') {
    mapUpdate(runs, key(0), new Uint8Array(RUNS_VALUE_SIZE), 0, 'runs');
    return 'ok';
  }
  if (cmd === 'ports' && rest.length === 2) {
    const [first, count] = rest.map(Number) as [number, number];
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 1 || count < 1 || first + count - 1 > 65535) {
      return `error bad port range ${rest.join(' ')}`;
    }
    setRange(cfg, first, first + count - 1);
    return 'ok';
  }
  return `error unknown command '${line.trim()}'`;
}

let closing = false;
function shutdown(): void {
  if (closing) return;
  closing = true;
  // Closing the link fd detaches the program; the maps go with the last fd.
  for (const fd of fds.reverse()) closeFd(fd);
  process.exit(0);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let reply: string;
  try {
    reply = handle(line);
  } catch (err) {
    reply = `error ${(err as Error).message.split('\n')[0]}`;
  }
  process.stdout.write(`${reply}\n`);
});
rl.on('close', shutdown);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
