/**
 * Member offsets of kernel structs, read from the running kernel's BTF
 * (/sys/kernel/btf/vmlinux). A program that reads a kernel struct through
 * a BTF pointer (bpf_skc_to_tcp_sock) must use the offsets of the kernel
 * it runs on, and these move between builds; libbpf's CO-RE patches them
 * at load time, and so does our loader (src/dataplane/tcp/sockmap-program.ts)
 * with what this finds. Only what that needs is decoded: the type section's
 * records are walked to find one struct by name and its members' bit
 * offsets. Format: Documentation/bpf/btf.rst.
 */
import { SluiceError } from '../errors.js';

/** A BTF blob this reader cannot use (reported as a BPF object error: the program cannot be fitted to this kernel). */
export class BtfError extends SluiceError<'SLUICE_ERR_BPF_OBJECT'> {
  constructor(message: string) {
    super('SLUICE_ERR_BPF_OBJECT', message);
    this.name = 'BtfError';
  }
}

const BTF_MAGIC = 0xeb9f;
const KIND = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

/** Bytes that follow a type record's 12-byte header, by kind. */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case KIND.INT:
    case KIND.VAR:
    case KIND.DECL_TAG:
      return 4;
    case KIND.ARRAY:
      return 12;
    case KIND.STRUCT:
    case KIND.UNION:
    case KIND.DATASEC:
    case KIND.ENUM64:
      return 12 * vlen;
    case KIND.ENUM:
    case KIND.FUNC_PROTO:
      return 8 * vlen;
    case KIND.PTR:
    case KIND.FWD:
    case KIND.TYPEDEF:
    case KIND.VOLATILE:
    case KIND.CONST:
    case KIND.RESTRICT:
    case KIND.FUNC:
    case KIND.FLOAT:
    case KIND.TYPE_TAG:
      return 0;
    default:
      throw new BtfError(`BTF type of unknown kind ${kind}: this kernel's BTF is newer than this reader`);
  }
}

/**
 * Byte offsets of `members` of `struct name` (members directly in the
 * struct, not in a nested anonymous one; not bitfields). Throws BtfError
 * naming what is missing.
 */
export function structMemberOffsets(btf: Uint8Array, name: string, members: readonly string[]): Record<string, number> {
  if (btf.length < 24) throw new BtfError('BTF blob shorter than its header');
  const dv = new DataView(btf.buffer, btf.byteOffset, btf.byteLength);
  if (dv.getUint16(0, true) !== BTF_MAGIC) throw new BtfError('not BTF (bad magic, or another byte order)');
  const hdrLen = dv.getUint32(4, true);
  const typeOff = hdrLen + dv.getUint32(8, true);
  const typeLen = dv.getUint32(12, true);
  const strOff = hdrLen + dv.getUint32(16, true);
  const strLen = dv.getUint32(20, true);
  if (typeOff + typeLen > btf.length || strOff + strLen > btf.length) throw new BtfError('BTF sections run past the blob');
  const str = (off: number): string => {
    if (off >= strLen) throw new BtfError(`BTF string offset ${off} out of range`);
    const start = strOff + off;
    let end = start;
    while (end < strOff + strLen && btf[end] !== 0) end++;
    return Buffer.from(btf.buffer, btf.byteOffset + start, end - start).toString('latin1');
  };
  for (let at = typeOff; at + 12 <= typeOff + typeLen;) {
    const nameOff = dv.getUint32(at, true);
    const info = dv.getUint32(at + 4, true);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kindFlag = info >>> 31 === 1;
    const extra = extraBytes(kind, vlen);
    if (at + 12 + extra > typeOff + typeLen) throw new BtfError(`BTF type record at ${at - typeOff} runs past the type section`);
    if (kind === KIND.STRUCT && nameOff !== 0 && str(nameOff) === name) {
      const found: Record<string, number> = {};
      for (let i = 0; i < vlen; i++) {
        const m = at + 12 + 12 * i;
        const memberName = str(dv.getUint32(m, true));
        if (!members.includes(memberName)) continue;
        const raw = dv.getUint32(m + 8, true);
        const bitfieldSize = kindFlag ? raw >>> 24 : 0;
        const bits = kindFlag ? raw & 0xffffff : raw;
        if (bitfieldSize !== 0 || bits % 8 !== 0) throw new BtfError(`struct ${name}.${memberName} is a bitfield`);
        found[memberName] = bits / 8;
      }
      const missing = members.filter((m) => found[m] === undefined);
      if (missing.length) throw new BtfError(`struct ${name} in this kernel's BTF has no member ${missing.join(', ')}`);
      return found;
    }
    at += 12 + extra;
  }
  throw new BtfError(`struct ${name} is not in this kernel's BTF`);
}
