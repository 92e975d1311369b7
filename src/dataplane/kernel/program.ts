/**
 * Our own loader for bpf/sluice.o: creates the maps (or opens the pinned
 * ones a previous Sluice process left), writes their fds into the program
 * and loads it once per tcx direction. No libbpf, no bpftool, no compiler:
 * the object is committed and rebuilt by `npm run build:bpf`.
 */
import { readFileSync, existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseBpfElf, relocateMaps, type ElfMapDef, type ElfObject } from '../../wire/elf.js';
import {
  BPF_PROG_TYPE_SCHED_CLS,
  BPF_PROG_TYPE_XDP,
  BPF_XDP,
  BPF_TCX_EGRESS,
  BPF_TCX_INGRESS,
  closeFd,
  mapCreate,
  mapInfo,
  mapUpdate,
  objGet,
  objPin,
  progLoad,
} from '../../sys/bpf.js';
import { EngineError } from '../../errors.js';

const BPF_MAP_TYPE_DEVMAP_HASH = 25;

/** How EngineErrors from loading the eBPF object name the engine. */
const KERNEL_ENGINE = "the kernel tier's eBPF program (bpf/sluice.o)";

/** bpf/sluice.o, found from src/ (tsx) and dist/ alike: both sit one level below the package root. */
export function objectPath(): string {
  return fileURLToPath(new URL('../../../bpf/sluice.o', import.meta.url));
}

let cached: ElfObject | undefined;
export function readObject(): ElfObject {
  cached ??= parseBpfElf(readFileSync(objectPath()));
  return cached;
}

export interface LoadedMaps {
  readonly fds: ReadonlyMap<string, number>;
  readonly defs: ReadonlyMap<string, ElfMapDef>;
  /** True when the maps were opened from pins (state left by an earlier process). */
  readonly adopted: boolean;
}

/**
 * Creates every map of the object, or opens them from `pinDir` when a
 * previous process pinned them there. A pinned map whose shape differs from
 * this build's (an upgrade that changed a struct) is an error, not silently
 * reused.
 */
export function openMaps(pinDir: string | undefined): LoadedMaps {
  const obj = readObject();
  const fds = new Map<string, number>();
  const defs = new Map(obj.maps.map((m) => [m.name, m]));
  // The egress program gets its own program array (see loadPrograms).
  const chain = defs.get('chain');
  if (chain) defs.set(EGRESS_CHAIN, { ...chain, name: EGRESS_CHAIN });
  let adopted = false;
  try {
    if (pinDir) mkdirSync(pinDir, { recursive: true });
    for (const m of defs.values()) {
      const path = pinDir ? join(pinDir, `map_${m.name}`) : undefined;
      const existing = path && existsSync(path) ? objGet(path) : undefined;
      if (existing !== undefined) {
        fds.set(m.name, existing);
        const got = mapInfo(existing, path);
        // Device maps are made read-only to programs by the kernel itself (BPF_F_RDONLY_PROG, 0x80).
        const flags = m.type === BPF_MAP_TYPE_DEVMAP_HASH ? m.flags | 0x80 : m.flags;
        const want = { type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries, flags };
        const diff = (Object.keys(want) as (keyof typeof want)[]).filter((k) => got[k] !== want[k]);
        if (diff.length) {
          // Reading it with this build's sizes would misread it (or overrun our buffers).
          throw new EngineError(
            KERNEL_ENGINE,
            `pinned map ${path} was made by another build of Sluice (${diff.map((k) => `${k} ${got[k]}, this build ${want[k]}`).join('; ')}): run \`sluice detach\` to remove the old pinned state`,
          );
        }
        adopted = true;
        continue;
      }
      const fd = mapCreate({ type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries, flags: m.flags, name: `sl_${m.name}` });
      fds.set(m.name, fd);
      if (path) objPin(fd, path);
    }
  } catch (err) {
    for (const fd of fds.values()) closeFd(fd);
    throw err;
  }
  return { fds, defs, adopted };
}

/** Name of the second copy of the `chain` map, used by the egress program. */
export const EGRESS_CHAIN = 'chain_egress';

export interface LoadedPrograms {
  readonly ingress: number;
  readonly egress: number;
  /** Instructions in the program (for sluice doctor). */
  readonly insns: number;
}

/**
 * Loads the tcx program twice (tcx checks the expected attach type at link
 * time) and puts each load in its own `chain`, the program array through
 * which a run continues a long subscriber list: the kernel lets a program
 * tail-call only programs of its own expected attach type, so the egress
 * load's `chain` references a second array (`chain_egress`). On a restart
 * that adopted pinned maps, this swaps the new programs in before the
 * links are updated: a packet in flight may finish in the new program,
 * whose layout is the same (a changed layout is refused by openMaps).
 */
export function loadPrograms(maps: LoadedMaps): LoadedPrograms {
  const obj = readObject();
  const prog = obj.programs.find((p) => p.section === 'tcx');
  if (!prog) throw new EngineError(KERNEL_ENGINE, `bpf/sluice.o has no 'tcx' program`);
  const chainIn = maps.fds.get('chain');
  const chainOut = maps.fds.get(EGRESS_CHAIN);
  if (chainIn === undefined || chainOut === undefined) throw new EngineError(KERNEL_ENGINE, `bpf/sluice.o has no 'chain' map`);
  const load = (expectedAttachType: number, name: string, chain: number) => {
    const fds = new Map(maps.fds);
    fds.set('chain', chain);
    const insns = relocateMaps(prog, fds);
    const fd = progLoad({ type: BPF_PROG_TYPE_SCHED_CLS, insns, license: obj.license, name, expectedAttachType });
    try {
      const value = new Uint8Array(4);
      new DataView(value.buffer).setUint32(0, fd, true);
      mapUpdate(chain, new Uint8Array(4), value, 0, `${name} chain`);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
    return fd;
  };
  const ingress = load(BPF_TCX_INGRESS, 'sluice_ingress', chainIn);
  try {
    return { ingress, egress: load(BPF_TCX_EGRESS, 'sluice_egress', chainOut), insns: prog.insns.length / 8 };
  } catch (err) {
    closeFd(ingress);
    throw err;
  }
}

/** Loads the `xdp` program (redirect in the driver, src/dataplane/kernel/xdp.ts) on the same maps. */
export function loadXdpProgram(maps: LoadedMaps): number {
  const obj = readObject();
  const prog = obj.programs.find((p) => p.section === 'xdp');
  if (!prog) throw new EngineError(KERNEL_ENGINE, `bpf/sluice.o has no 'xdp' program`);
  return progLoad({ type: BPF_PROG_TYPE_XDP, insns: relocateMaps(prog, maps.fds), license: obj.license, name: 'sluice_xdp', expectedAttachType: BPF_XDP });
}
