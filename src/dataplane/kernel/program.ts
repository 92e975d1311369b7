/**
 * Our own loader for bpf/sluice.o: creates the maps (or opens the pinned
 * ones a previous Sluice process left), writes their fds into the program
 * and loads it once per tcx direction. No libbpf, no bpftool, no compiler:
 * the object is committed and rebuilt by `npm run build:bpf`.
 */
import { readFileSync, existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseBpfElf, relocateMaps, type ElfMapDef, type ElfObject } from './elf.js';
import { BPF_PROG_TYPE_SCHED_CLS, BPF_TCX_EGRESS, BPF_TCX_INGRESS, closeFd, mapCreate, objGet, objPin, progLoad } from '../../sys/bpf.js';
import { SluiceError } from '../../errors.js';

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
  let adopted = false;
  try {
    if (pinDir) mkdirSync(pinDir, { recursive: true });
    for (const m of obj.maps) {
      const path = pinDir ? join(pinDir, `map_${m.name}`) : undefined;
      const existing = path && existsSync(path) ? objGet(path) : undefined;
      if (existing !== undefined) {
        fds.set(m.name, existing);
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

export interface LoadedPrograms {
  readonly ingress: number;
  readonly egress: number;
  /** Instructions in the program (for sluice doctor). */
  readonly insns: number;
}

/** Loads the tcx program twice: tcx checks the expected attach type at link time. */
export function loadPrograms(maps: LoadedMaps): LoadedPrograms {
  const obj = readObject();
  const prog = obj.programs.find((p) => p.section === 'tcx');
  if (!prog) throw new SluiceError('SLUICE_ERR_ENGINE', `bpf/sluice.o has no 'tcx' program`);
  const insns = relocateMaps(prog, maps.fds);
  const load = (expectedAttachType: number, name: string) =>
    progLoad({ type: BPF_PROG_TYPE_SCHED_CLS, insns, license: obj.license, name, expectedAttachType });
  const ingress = load(BPF_TCX_INGRESS, 'sluice_ingress');
  try {
    return { ingress, egress: load(BPF_TCX_EGRESS, 'sluice_egress'), insns: insns.length / 8 };
  } catch (err) {
    closeFd(ingress);
    throw err;
  }
}
