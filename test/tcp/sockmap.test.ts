/**
 * The sockmap path's own pieces (issue 22, part 2): the BTF reader that fits
 * the verdict program to the running kernel, the map layouts against the
 * committed object, and that a pair's map entries go when the pair does,
 * under a flood of connections that reset or close at once. Root only (the
 * programs need CAP_BPF and a cgroup attachment); the BTF tests need only
 * /sys/kernel/btf/vmlinux.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { once } from 'node:events';
import { structMemberOffsets, BtfError } from '../../src/wire/btf.js';
import { parseBpfElf } from '../../src/wire/elf.js';
import { SockmapProgram, sockmapUnavailable, tcpObjectPath } from '../../src/dataplane/tcp/sockmap-program.js';
import { TCP_CTL_SIZE, TCP_DIR_SIZE } from '../../src/dataplane/tcp/sockmap-layout.js';
import { collect, connectTo, randomBytes, sha, startRelay, startUpstream, until } from './tcp-harness.js';

const VMLINUX = '/sys/kernel/btf/vmlinux';
const noBtf = existsSync(VMLINUX) ? undefined : `${VMLINUX} is missing (a kernel without BTF)`;
const noSockmap = process.getuid?.() === 0 ? sockmapUnavailable() : 'needs root (eBPF programs and a cgroup attachment)';

test('BTF: tcp_sock member offsets of the running kernel', { skip: noBtf }, () => {
  const o = structMemberOffsets(readFileSync(VMLINUX), 'tcp_sock', ['write_seq', 'snd_una', 'bytes_acked']);
  for (const [name, off] of Object.entries(o)) assert.ok(Number.isInteger(off) && off > 0 && off < 0x7fff, `${name} at ${off}`);
  // write_seq and snd_una are u32, bytes_acked u64: three different places.
  assert.equal(new Set(Object.values(o)).size, 3);
});

test('BTF: a missing struct, a missing member and a damaged blob are errors that say so', { skip: noBtf }, () => {
  const btf = readFileSync(VMLINUX);
  assert.throws(
    () => structMemberOffsets(btf, 'no_such_struct_sluice', ['x']),
    (e: unknown) => e instanceof BtfError && /no_such_struct_sluice is not in/.test(e.message),
  );
  assert.throws(
    () => structMemberOffsets(btf, 'tcp_sock', ['no_such_member']),
    (e: unknown) => e instanceof BtfError && /has no member no_such_member/.test(e.message),
  );
  assert.throws(() => structMemberOffsets(new Uint8Array(10), 'tcp_sock', ['write_seq']), BtfError);
  assert.throws(() => structMemberOffsets(Buffer.from(btf.subarray(0, 4096)), 'tcp_sock', ['write_seq']), BtfError);
  const bad = Buffer.from(btf.subarray(0, 64));
  bad.writeUInt16LE(0x1234, 0);
  assert.throws(() => structMemberOffsets(bad, 'tcp_sock', ['write_seq']), /bad magic/);
});

test('the object bpf/tcp_redirect.o has the maps and value sizes the TypeScript side reads and writes', () => {
  const obj = parseBpfElf(readFileSync(tcpObjectPath()));
  const m = new Map(obj.maps.map((x) => [x.name, x]));
  assert.equal(m.get('tcp_dirs')?.valueSize, TCP_DIR_SIZE);
  assert.equal(m.get('tcp_ctl')?.valueSize, TCP_CTL_SIZE);
  assert.equal(m.get('tcp_socks')?.keySize, 8);
  assert.deepEqual(obj.programs.map((p) => p.section).sort(), ['sk_skb/verdict', 'sockops']);
});

test('sockmap: a flood of connections that reset or close at once leaves no map entry behind', { skip: noSockmap }, async () => {
  // Hold the programs so the maps outlive the relay and can be counted after it.
  const prog = SockmapProgram.acquire();
  try {
    const base = prog.entries();
    const upstream = await startUpstream((s) => s.pipe(s));
    const relay = await startRelay('sockmap', upstream.port, { maxConnections: 16, allow: 'any' });
    const port = Number(new URL(relay.listen).port);
    for (let i = 0; i < 120; i++) {
      const s = connect({ host: '127.0.0.1', port });
      s.on('error', () => {});
      await once(s, 'connect').catch(() => undefined);
      if (i % 2) s.resetAndDestroy();
      else s.end();
    }
    assert.ok(await until(() => relay.stats().active === 0, 20_000), `active stays at ${relay.stats().active}`);
    const c = await connectTo(relay);
    const data = randomBytes(500_000, 4);
    const got = collect(c);
    c.end(data);
    assert.equal(sha(await got), sha(data));
    assert.ok(await until(() => relay.stats().active === 0, 10_000));
    await relay.close();
    await upstream.close();
    const left = prog.entries();
    assert.deepEqual(left, base, `entries before ${JSON.stringify(base)}, after ${JSON.stringify(left)}`);
  } finally {
    prog.release();
  }
});

test('sockmap: the same port number on another address is not taken (a listen is matched by address and port)', { skip: noSockmap }, async () => {
  const prog = SockmapProgram.acquire();
  const upstream = await startUpstream((s) => s.pipe(s));
  const relay = await startRelay('sockmap', upstream.port);
  const port = Number(new URL(relay.listen).port);
  const other = createServer((s) => s.pipe(s));
  try {
    // Someone else's listener on 127.0.0.2 with the relay's port number.
    await new Promise<void>((resolve, reject) => other.once('error', reject).listen(port, '127.0.0.2', () => resolve()));
    const before = prog.entries().dirs;
    const c = connect({ host: '127.0.0.2', port });
    c.on('error', () => {});
    await once(c, 'connect');
    const got = collect(c);
    c.end('hello');
    assert.equal((await got).toString(), 'hello');
    assert.equal(prog.entries().dirs, before, 'a connection to 127.0.0.2 was taken into the map');
    // The relay's own address still is.
    const r = await connectTo(relay);
    const echoed = collect(r);
    r.end('x');
    assert.equal((await echoed).toString(), 'x');
    assert.equal(relay.stats().sockmap?.fallbackPairs, 0);
  } finally {
    other.close();
    await relay.close();
    await upstream.close();
    prog.release();
  }
});
