/**
 * Reads a clang-built eBPF object (ELF64, little-endian): the program
 * sections, their map relocations, the legacy `maps` section and the
 * license. Pure (bytes in, description out) so it is tested without root.
 *
 * Only what bpf/sluice.c uses is supported: one function per program
 * section, R_BPF_64_64 relocations against map symbols, no .data/.rodata,
 * no bpf-to-bpf calls, no BTF. Anything else is refused with a clear error
 * rather than loaded wrongly.
 */
import { SluiceError } from '../errors.js';

export interface ElfMapDef {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
}

export interface ElfProgram {
  /** Section name, e.g. `tcx`. */
  readonly section: string;
  /** Function symbol name. */
  readonly name: string;
  /** Raw instructions, 8 bytes each. */
  readonly insns: Uint8Array;
  /** Instruction index of each `ld_imm64` that must receive a map fd. */
  readonly mapRelocations: readonly { readonly insn: number; readonly map: string }[];
}

export interface ElfObject {
  readonly license: string;
  readonly maps: readonly ElfMapDef[];
  readonly programs: readonly ElfProgram[];
}

/** The eBPF object is damaged, or uses what this loader does not support. Code SLUICE_ERR_BPF_OBJECT. */
export class ElfError extends SluiceError<'SLUICE_ERR_BPF_OBJECT'> {
  constructor(message: string) {
    super('SLUICE_ERR_BPF_OBJECT', `eBPF object: ${message}`);
    this.name = 'ElfError';
  }
}

const SHT_SYMTAB = 2;
const SHT_REL = 9;
const SHF_EXECINSTR = 0x4;
const EM_BPF = 247;
const R_BPF_64_64 = 1;
const MAP_DEF_SIZE = 20;

interface Section {
  readonly index: number;
  readonly name: string;
  readonly type: number;
  readonly flags: number;
  readonly offset: number;
  readonly size: number;
  readonly link: number;
  readonly info: number;
}

interface ElfSymbol {
  readonly name: string;
  readonly section: number;
  readonly value: number;
  readonly type: number;
}

export function parseBpfElf(bytes: Uint8Array): ElfObject {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (end: number, what: string) => {
    if (end > bytes.length) throw new ElfError(`truncated (${what})`);
  };
  need(64, 'header');
  if (v.getUint32(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
  if (bytes[4] !== 2 || bytes[5] !== 1) throw new ElfError('not ELF64 little-endian');
  if (v.getUint16(18, true) !== EM_BPF) throw new ElfError(`machine ${v.getUint16(18, true)} is not BPF (${EM_BPF})`);
  const shoff = Number(v.getBigUint64(40, true));
  const shentsize = v.getUint16(58, true);
  const shnum = v.getUint16(60, true);
  const shstrndx = v.getUint16(62, true);
  // Each header is read as a 64-byte Elf64_Shdr: a smaller entry size would
  // have the reads below run past the table (or the file).
  if (shnum > 0 && shentsize < 64) throw new ElfError(`section header size ${shentsize} is below 64`);
  need(shoff + shnum * shentsize, 'section headers');

  const raw = Array.from({ length: shnum }, (_, index) => {
    const o = shoff + index * shentsize;
    return {
      index,
      nameOff: v.getUint32(o, true),
      type: v.getUint32(o + 4, true),
      flags: Number(v.getBigUint64(o + 8, true)),
      offset: Number(v.getBigUint64(o + 24, true)),
      size: Number(v.getBigUint64(o + 32, true)),
      link: v.getUint32(o + 40, true),
      info: v.getUint32(o + 44, true),
    };
  });
  const strtab = raw[shstrndx];
  if (!strtab) throw new ElfError('no section name table');
  const str = (tableOffset: number, at: number): string => {
    let end = tableOffset + at;
    while (end < bytes.length && bytes[end] !== 0) end++;
    return Buffer.from(bytes.subarray(tableOffset + at, end)).toString('utf8');
  };
  const sections: Section[] = raw.map((s) => {
    if (s.type !== 8 /* NOBITS */) need(s.offset + s.size, `section ${s.index}`);
    return { index: s.index, name: str(strtab.offset, s.nameOff), type: s.type, flags: s.flags, offset: s.offset, size: s.size, link: s.link, info: s.info };
  });
  const body = (s: Section) => bytes.subarray(s.offset, s.offset + s.size);

  // A NOBITS section has no bytes in the file (its offset was not checked
  // above): anything read through a DataView must have them.
  const inFile = (s: Section, what: string): Section => {
    if (s.type === 8 /* NOBITS */) throw new ElfError(`${what} (section ${s.index}) has no bytes in the file`);
    return s;
  };
  const symtabAny = sections.find((s) => s.type === SHT_SYMTAB);
  if (!symtabAny) throw new ElfError('no symbol table');
  const symtab = inFile(symtabAny, 'the symbol table');
  const symStr = sections[symtab.link];
  if (!symStr) throw new ElfError('symbol table has no string table');
  const symbols: ElfSymbol[] = [];
  for (let o = symtab.offset; o + 24 <= symtab.offset + symtab.size; o += 24) {
    symbols.push({
      name: str(symStr.offset, v.getUint32(o, true)),
      type: bytes[o + 4]! & 0xf,
      section: v.getUint16(o + 6, true),
      value: Number(v.getBigUint64(o + 8, true)),
    });
  }

  const licenseSec = sections.find((s) => s.name === 'license');
  if (!licenseSec) throw new ElfError("no 'license' section");
  const license = Buffer.from(body(licenseSec)).toString('utf8').replace(/\0.*$/s, '');

  const mapsSec = sections.find((s) => s.name === 'maps');
  const maps: ElfMapDef[] = [];
  if (mapsSec) {
    inFile(mapsSec, 'the maps section');
    for (const sym of symbols.filter((s) => s.section === mapsSec.index && s.name)) {
      if (sym.value + MAP_DEF_SIZE > mapsSec.size) throw new ElfError(`map ${sym.name} lies outside the maps section`);
      const o = mapsSec.offset + sym.value;
      maps.push({
        name: sym.name,
        type: v.getUint32(o, true),
        keySize: v.getUint32(o + 4, true),
        valueSize: v.getUint32(o + 8, true),
        maxEntries: v.getUint32(o + 12, true),
        flags: v.getUint32(o + 16, true),
      });
    }
  }
  for (const s of sections) {
    if (/^\.(data|rodata|bss)/.test(s.name) && s.size > 0) throw new ElfError(`section ${s.name} (global data) is not supported by this loader`);
  }

  const programs: ElfProgram[] = [];
  for (const sec of sections) {
    if (!(sec.flags & SHF_EXECINSTR) || sec.size === 0) continue;
    if (sec.name === '.text') throw new ElfError('.text holds code (bpf-to-bpf calls are not supported): inline helpers');
    const funcs = symbols.filter((s) => s.section === sec.index && s.type === 2 /* STT_FUNC */);
    if (funcs.length !== 1) throw new ElfError(`section ${sec.name} must hold exactly one function (has ${funcs.length})`);
    const insns = Uint8Array.from(body(sec));
    const mapRelocations: { insn: number; map: string }[] = [];
    const rel = sections.find((s) => s.type === SHT_REL && s.info === sec.index);
    if (rel) {
      inFile(rel, `the relocations of ${sec.name}`);
      for (let o = rel.offset; o + 16 <= rel.offset + rel.size; o += 16) {
        const offset = Number(v.getBigUint64(o, true));
        const info = v.getBigUint64(o + 8, true);
        const type = Number(info & 0xffffffffn);
        const sym = symbols[Number(info >> 32n)];
        if (!sym) throw new ElfError(`relocation at ${offset} names no symbol`);
        if (type !== R_BPF_64_64 || sym.section !== mapsSec?.index) {
          throw new ElfError(`relocation type ${type} against '${sym.name}' is not a map reference`);
        }
        // The symbol must be one of the maps read above (a nameless or
        // out-of-range one was not), or the loader would find no fd for it.
        if (!maps.some((m) => m.name === sym.name)) throw new ElfError(`relocation at ${offset} names '${sym.name}', which is not a map of this object`);
        const insn = offset / 8;
        if (!Number.isInteger(insn) || insn + 1 >= insns.length / 8 || insns[offset] !== 0x18) {
          throw new ElfError(`relocation at ${offset} does not point at an ld_imm64`);
        }
        mapRelocations.push({ insn, map: sym.name });
      }
    }
    programs.push({ section: sec.name, name: funcs[0]!.name, insns, mapRelocations });
  }
  if (programs.length === 0) throw new ElfError('no program sections');
  return { license, maps, programs };
}

/** Writes map fds into the program's ld_imm64 instructions (src_reg = BPF_PSEUDO_MAP_FD). */
export function relocateMaps(program: ElfProgram, fds: ReadonlyMap<string, number>): Uint8Array {
  const out = Uint8Array.from(program.insns);
  const v = new DataView(out.buffer);
  for (const r of program.mapRelocations) {
    const fd = fds.get(r.map);
    if (fd === undefined) throw new ElfError(`no fd for map '${r.map}'`);
    const o = r.insn * 8;
    out[o + 1] = (out[o + 1]! & 0x0f) | (1 << 4);
    v.setInt32(o + 4, fd, true);
  }
  return out;
}
