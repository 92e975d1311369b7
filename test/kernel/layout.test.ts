/**
 * The committed eBPF object against the TypeScript mirror of its layout,
 * and the ELF reader's refusal of malformed objects. Needs no root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseBpfElf, relocateMaps, ElfError } from '../../src/wire/elf.js';
import { objectPath } from '../../src/dataplane/kernel/program.js';
import * as L from '../../src/dataplane/kernel/layout.js';

const bytes = readFileSync(objectPath());
const obj = parseBpfElf(bytes);

test('the object declares the maps the TypeScript side writes, with the same sizes', () => {
  const m = Object.fromEntries(obj.maps.map((x) => [x.name, x]));
  assert.equal(obj.license, 'Dual MIT/GPL');
  assert.equal(m.flows?.keySize, L.FLOW_KEY_SIZE);
  assert.equal(m.flows?.valueSize, L.FLOW_VALUE_SIZE);
  assert.equal(m.flows?.maxEntries, L.MAX_FLOWS);
  assert.equal(m.allow?.keySize, L.ALLOW_KEY_SIZE);
  assert.equal(m.allow?.maxEntries, L.MAX_ALLOW);
  assert.equal(m.local_addrs?.keySize, 16);
  assert.equal(m.local_addrs?.maxEntries, L.MAX_LOCAL);
  assert.equal(m.flow_stats?.valueSize, L.FLOW_COUNTERS_SIZE);
  assert.equal(m.flow_stats?.maxEntries, L.MAX_FLOWS);
  assert.equal(m.dest_stats?.valueSize, L.DEST_COUNTERS_SIZE);
  assert.equal(m.dest_stats?.maxEntries, L.MAX_DESTS);
  assert.equal(m.hops?.valueSize, L.HOP_SIZE);
  assert.equal(m.hops?.maxEntries, L.MAX_DESTS);
  assert.equal(m.ifcfg?.keySize, 4);
  assert.equal(m.ifcfg?.valueSize, L.IFCFG_SIZE);
  assert.equal(m.ifcfg?.maxEntries, L.MAX_IFACES);
  assert.equal(m.chain?.type, 3, 'chain is a program array');
  const prog = obj.programs.find((p) => p.section === 'tcx');
  assert.ok(prog && prog.mapRelocations.length > 0);
  assert.ok(prog.mapRelocations.every((r) => obj.maps.some((x) => x.name === r.map)));
});

test('map relocations write the fd into the ld_imm64 with src_reg = BPF_PSEUDO_MAP_FD', () => {
  const prog = obj.programs[0]!;
  const fds = new Map(obj.maps.map((m, i) => [m.name, 100 + i]));
  const out = relocateMaps(prog, fds);
  for (const r of prog.mapRelocations) {
    assert.equal(out[r.insn * 8 + 1]! >> 4, 1);
    assert.equal(new DataView(out.buffer).getInt32(r.insn * 8 + 4, true), fds.get(r.map));
  }
  assert.throws(() => relocateMaps(prog, new Map()), ElfError);
});

test('truncated or corrupted objects are refused with ElfError, never misread', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), (n) => {
      try {
        parseBpfElf(bytes.subarray(0, n));
        return false;
      } catch (e) {
        return e instanceof ElfError;
      }
    }),
    { numRuns: 200 },
  );
  const wrongMachine = Buffer.from(bytes);
  wrongMachine.writeUInt16LE(62, 18);
  assert.throws(() => parseBpfElf(wrongMachine), /not BPF/);
});

test('flow values encode the policy as the program reads it', () => {
  const listen = { address: '10.0.0.1', port: 5000, family: 4 as const };
  const v = L.flowValue({
    slot: 7,
    listen,
    sources: { any: false, rules: [{ family: 4, address: '10.0.0.0', prefix: 8 }] },
    maxDatagramSize: 1316,
    payload: 'mpegts',
    subs: [{ endpoint: { address: '10.0.0.2', port: 6000, family: 4 }, destSlot: 3, pos: 0, local: true }],
    spillPort: 40000,
    generation: 1,
  });
  const d = L.decodeFlowValue(v);
  assert.equal(d.slot, 7);
  assert.equal(d.flags, L.FLAG.mpegts | L.FLAG.spill);
  assert.equal(d.subs[0]!.port, 6000);
  assert.equal(d.subs[0]!.destSlot, 3);
  assert.deepEqual([...d.subs[0]!.addr.subarray(10)], [0xff, 0xff, 10, 0, 0, 2]);
  const [k] = L.allowKeys(7, { any: false, rules: [{ family: 4, address: '10.0.0.0', prefix: 8 }] });
  assert.equal(new DataView(k!.buffer).getUint32(0, true), 32 + 96 + 8);
});

test('a group listen: group and wildcard-source flags, no source address, the join interface in in_ifindex', () => {
  const base = { slot: 2, sources: { any: true } as const, maxDatagramSize: 1316, payload: 'any' as const, subs: [], spillPort: 0, generation: 1 };
  const v = L.flowValue({ ...base, listen: { address: '239.1.1.1', port: 5000, family: 4 }, groupIfindex: 7 });
  const dv = new DataView(v.buffer);
  assert.equal(L.decodeFlowValue(v).flags, L.FLAG.anySource | L.FLAG.srcWildcard | L.FLAG.group);
  assert.ok(
    v.subarray(16, 32).every((b) => b === 0),
    "copies take the route's source address",
  );
  assert.equal(dv.getUint16(32), 5000);
  assert.equal(dv.getUint16(34, true), 7);
  // Unnamed interface, or one numbered beyond 16 bits: 0, the program leaves the group to the stack.
  assert.equal(new DataView(L.flowValue({ ...base, listen: { address: 'ff3e::1', port: 5000, family: 6 } }).buffer).getUint16(34, true), 0);
  assert.equal(
    new DataView(L.flowValue({ ...base, listen: { address: '239.1.1.1', port: 5000, family: 4 }, groupIfindex: 70_000 }).buffer).getUint16(34, true),
    0,
  );
  // A unicast listen never has the group flag or an interface.
  const u = L.flowValue({ ...base, listen: { address: '10.0.0.1', port: 5000, family: 4 }, groupIfindex: 7 });
  assert.equal(L.decodeFlowValue(u).flags & L.FLAG.group, 0);
  assert.equal(new DataView(u.buffer).getUint16(34, true), 0);
});

test('subscribers keep their positions: holes stay empty and count towards nsubs', () => {
  const listen = { address: '0.0.0.0', port: 5000, family: 4 as const };
  const sub = (port: number, pos: number) => ({ endpoint: { address: '10.0.0.9', port, family: 4 as const }, destSlot: 100 + pos, pos, local: false });
  const base = { slot: 1, listen, sources: { any: true, rules: [] }, maxDatagramSize: 1316, payload: 'any' as const, spillPort: 0, generation: 1 };
  const v = L.flowValue({ ...base, subs: [sub(7002, 2), sub(7000, 0), sub(7070, 70)] });
  const view = new DataView(v.buffer);
  assert.equal(view.getUint16(12, true), 71, 'nsubs spans the highest position');
  assert.equal(view.getUint16(L.FLOW_VALUE_HEADER + 1 * L.SUB_SIZE + 16), 0, 'position 1 is a hole (port 0)');
  const d = L.decodeFlowValue(v);
  assert.deepEqual(
    d.subs.map((s) => [s.pos, s.port, s.destSlot]),
    [
      [0, 7000, 100],
      [2, 7002, 102],
      [70, 7070, 170],
    ],
  );
  assert.equal(d.flags & L.FLAG.srcWildcard, L.FLAG.srcWildcard);
  assert.throws(() => L.flowValue({ ...base, subs: [sub(7000, L.MAX_SUBS)] }), RangeError);
});

test(
  'bpf/sluice.o and bpf/tcp_redirect.o are built from their sources as committed',
  { skip: hasClang() ? undefined : 'clang is not installed (only needed to rebuild the objects)' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bpf-'));
    for (const f of ['sluice.c', 'tcp_redirect.c', 'build.sh']) copyFileSync(new URL(`../../bpf/${f}`, import.meta.url), join(dir, f));
    execFileSync('sh', [join(dir, 'build.sh')], { stdio: 'ignore' });
    assert.ok(readFileSync(join(dir, 'sluice.o')).equals(bytes), 'bpf/sluice.o is stale: run npm run build:bpf and commit it');
    const tcp = readFileSync(new URL('../../bpf/tcp_redirect.o', import.meta.url));
    assert.ok(readFileSync(join(dir, 'tcp_redirect.o')).equals(tcp), 'bpf/tcp_redirect.o is stale: run npm run build:bpf and commit it');
  },
);

function hasClang(): boolean {
  try {
    execFileSync('clang', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
