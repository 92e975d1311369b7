/**
 * Loads and attaches bpf/tcp_redirect.o, the sockmap path of tcp-redirect:
 * its maps, the sock_ops program on this process's cgroup (it puts our
 * sockets into the sockhash the moment they are established) and the
 * verdict program on the sockhash. One instance per process, shared by
 * every relay in sockmap mode and released with the last (closing the
 * links detaches both programs; the kernel takes the sockets out of the
 * map when they close).
 *
 * The object's tcp_sock loads carry placeholder offsets; they are replaced
 * here with the running kernel's, from its BTF (src/wire/btf.ts), as
 * libbpf's CO-RE would.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseBpfElf, relocateMaps, type ElfObject, type ElfProgram } from '../../wire/elf.js';
import { structMemberOffsets } from '../../wire/btf.js';
import { closeFd, linkCreate, mapCreate, mapDelete, mapKeys, mapLookup, mapUpdate, progLoad } from '../../sys/bpf.js';
import { EngineError } from '../../errors.js';
import {
  TCP_DIR_SIZE,
  TCP_PORT_LISTEN,
  TCP_PORT_UPSTREAM,
  TCP_SOCK_PLACEHOLDERS,
  cookieKey,
  decodeTcpDir,
  encodeTcpCtl,
  encodeTcpPort,
  u32,
  type TcpCtl,
  type TcpDir,
} from './sockmap-layout.js';

const ENGINE = "tcp-redirect's sockmap programs (bpf/tcp_redirect.o)";
const BPF_PROG_TYPE_SOCK_OPS = 13;
const BPF_PROG_TYPE_SK_SKB = 14;
const BPF_CGROUP_SOCK_OPS = 3;
const BPF_SK_SKB_VERDICT = 38;

export function tcpObjectPath(): string {
  return fileURLToPath(new URL('../../../bpf/tcp_redirect.o', import.meta.url));
}

/** The cgroup v2 directory this process is in (where the sock_ops program attaches), or why there is none. */
export function ownCgroupDir(): { dir?: string; why?: string } {
  let mount: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post?.startsWith('cgroup2 ')) {
      mount = pre!.split(' ')[4];
      break;
    }
  }
  if (!mount) return { why: 'no cgroup v2 hierarchy is mounted' };
  const own = readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  if (!own) return { why: 'this process has no cgroup v2 path (/proc/self/cgroup)' };
  return { dir: `${mount}${own.slice(3) === '/' ? '' : own.slice(3)}` };
}

/** Writes the running kernel's tcp_sock offsets over the object's placeholders. */
function fitToKernel(prog: ElfProgram, insns: Uint8Array): Uint8Array {
  const wanted = Object.values(TCP_SOCK_PLACEHOLDERS);
  const offsets = structMemberOffsets(readFileSync('/sys/kernel/btf/vmlinux'), 'tcp_sock', wanted);
  const v = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
  const seen = new Set<string>();
  for (let o = 0; o < insns.length; o += 8) {
    // BPF_LDX | BPF_MEM of any size: class 1, mode 3.
    if ((insns[o]! & 0x07) !== 0x01 || (insns[o]! & 0xe0) !== 0x60) continue;
    const member = TCP_SOCK_PLACEHOLDERS[v.getInt16(o + 2, true)];
    if (!member) continue;
    const off = offsets[member]!;
    if (off > 0x7fff) throw new EngineError(ENGINE, `tcp_sock.${member} at offset ${off} is out of a load's reach`);
    v.setInt16(o + 2, off, true);
    seen.add(member);
  }
  if (prog.section.startsWith('sk_skb') && seen.size !== wanted.length)
    throw new EngineError(ENGINE, `the verdict program lacks loads of ${wanted.filter((m) => !seen.has(m)).join(', ')}`);
  return insns;
}

/** Why the sockmap path cannot run here (it loads the programs once to find out), or undefined when it can. */
export function sockmapUnavailable(): string | undefined {
  try {
    SockmapProgram.acquire().release();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

export class SockmapProgram {
  static #shared: SockmapProgram | undefined;
  #users = 0;
  readonly #maps: Map<string, number>;
  readonly #fds: number[];
  readonly #ports = new Map<number, number>();

  private constructor(maps: Map<string, number>, fds: number[]) {
    this.#maps = maps;
    this.#fds = fds;
  }

  /** The process's instance, loading and attaching it on first use. Throws (EngineError, SyscallError) where it cannot run. */
  static acquire(): SockmapProgram {
    const p = (SockmapProgram.#shared ??= SockmapProgram.#load());
    p.#users++;
    return p;
  }

  static #load(): SockmapProgram {
    const { dir, why } = ownCgroupDir();
    if (!dir) throw new EngineError(ENGINE, `cannot attach the sock_ops program: ${why}`);
    const obj: ElfObject = parseBpfElf(readFileSync(tcpObjectPath()));
    const maps = new Map<string, number>();
    const fds: number[] = [];
    try {
      for (const m of obj.maps) {
        const fd = mapCreate({ type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries, flags: m.flags, name: `sl_${m.name}` });
        maps.set(m.name, fd);
        fds.push(fd);
      }
      const load = (section: string, type: number, attach: number, name: string): number => {
        const prog = obj.programs.find((p) => p.section === section);
        if (!prog) throw new EngineError(ENGINE, `bpf/tcp_redirect.o has no '${section}' program`);
        const fd = progLoad({ type, insns: fitToKernel(prog, relocateMaps(prog, maps)), license: obj.license, name, expectedAttachType: attach });
        fds.push(fd);
        return fd;
      };
      const verdict = load('sk_skb/verdict', BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_VERDICT, 'sluice_tcp_vd');
      const sockops = load('sockops', BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS, 'sluice_tcp_ops');
      fds.push(linkCreate(verdict, maps.get('tcp_socks')!, BPF_SK_SKB_VERDICT, 'sk_skb verdict on tcp_socks'));
      const cg = openSync(dir, 'r');
      try {
        fds.push(linkCreate(sockops, cg, BPF_CGROUP_SOCK_OPS, `sock_ops on cgroup ${dir}`));
      } finally {
        closeSync(cg);
      }
    } catch (err) {
      for (const fd of fds.reverse()) closeFd(fd);
      throw err;
    }
    return new SockmapProgram(maps, fds);
  }

  /** Connections accepted on this local port (and address, unless a wildcard) from now on are taken (counted per caller). */
  addPort(port: number, address?: string): void {
    const n = this.#ports.get(port) ?? 0;
    if (n === 0) mapUpdate(this.#maps.get('tcp_ports')!, u32(port), encodeTcpPort(TCP_PORT_LISTEN, address), 0, 'tcp_ports');
    this.#ports.set(port, n + 1);
  }

  removePort(port: number): void {
    const n = this.#ports.get(port) ?? 0;
    if (n <= 1) {
      this.#ports.delete(port);
      mapDelete(this.#maps.get('tcp_ports')!, u32(port), 'tcp_ports');
    } else this.#ports.set(port, n - 1);
  }

  /** The upstream socket bound to this local port is taken when its connection is established. */
  addUpstreamPort(port: number): void {
    mapUpdate(this.#maps.get('tcp_ports')!, u32(port), encodeTcpPort(TCP_PORT_UPSTREAM), 0, 'tcp_ports');
  }

  /** Once joined (or failed): the entry is no longer needed, and the port may be reused by anyone. */
  removeUpstreamPort(port: number): void {
    mapDelete(this.#maps.get('tcp_ports')!, u32(port), 'tcp_ports');
  }

  /** The direction entry of the socket with this cookie; undefined when the sock_ops program did not take it. */
  dir(cookie: bigint): TcpDir | undefined {
    const b = mapLookup(this.#maps.get('tcp_dirs')!, cookieKey(cookie), TCP_DIR_SIZE, 'tcp_dirs');
    return b ? decodeTcpDir(b) : undefined;
  }

  setCtl(cookie: bigint, ctl: TcpCtl): void {
    mapUpdate(this.#maps.get('tcp_ctl')!, cookieKey(cookie), encodeTcpCtl(ctl), 0, 'tcp_ctl');
  }

  /** Drops what the maps hold for a socket that is done (its sockhash entry goes when it closes). */
  forget(cookie: bigint): void {
    const key = cookieKey(cookie);
    mapDelete(this.#maps.get('tcp_ctl')!, key, 'tcp_ctl');
    mapDelete(this.#maps.get('tcp_dirs')!, key, 'tcp_dirs');
  }

  /** Entries in the maps user space manages (a pair's are removed when it ends): for tests and sluice doctor. */
  entries(): { dirs: number; ctl: number; ports: number } {
    return {
      dirs: mapKeys(this.#maps.get('tcp_dirs')!, 8, 'tcp_dirs').length,
      ctl: mapKeys(this.#maps.get('tcp_ctl')!, 8, 'tcp_ctl').length,
      ports: mapKeys(this.#maps.get('tcp_ports')!, 4, 'tcp_ports').length,
    };
  }

  release(): void {
    if (--this.#users > 0) return;
    if (SockmapProgram.#shared === this) SockmapProgram.#shared = undefined;
    for (const fd of this.#fds.reverse()) closeFd(fd);
  }
}
