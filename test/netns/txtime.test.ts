/**
 * SO_TXTIME detection against a real kernel. The rtnetlink qdisc dump is
 * checked against `tc -j qdisc show` (iproute2, used here only as an
 * oracle; Sluice never runs it), in the root namespace (read-only) and
 * inside test namespaces, where the detection runs via a fixture:
 *
 *   - a veth between two namespaces gets `noqueue`: not usable, and the
 *     detail names the interface and its qdisc;
 *   - a 4-queue veth with root `mq` gets pfifo_fast children: the mq rule
 *     sees them (handles 8001:, parents 8001:1..4) and says not usable;
 *   - where the kernel has `fq`, a root fq makes the interface honour it
 *     (this VM has no fq/etf, so that part reports itself skipped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { rootSkipReason, withTopology, type Topology } from '../../harness/netns/netns.js';
import { TC_H_ROOT, dumpQdiscs, type QdiscInfo } from '../../src/sys/netlink/rtnetlink.js';
import type { TxtimeSupport } from '../../src/sys/txtime.js';

const skip = rootSkipReason();
if (skip) process.stdout.write(`# txtime namespace tests skipped: ${skip}\n`);
const FIXTURE = fileURLToPath(new URL('../fixtures/txtime-check.ts', import.meta.url));

function tcSkipReason(): string | undefined {
  if (process.platform !== 'linux') return `needs Linux (platform is ${process.platform})`;
  try {
    execFileSync('tc', ['-V'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return "iproute2 'tc' not found: no oracle to compare the dump with";
  }
}

/** tc's print_tc_classid. */
function classid(h: number): string {
  if (h === TC_H_ROOT) return 'root';
  if (h === 0) return 'none';
  const maj = (h >>> 16).toString(16);
  const min = (h & 0xffff).toString(16);
  if (h >>> 16 === 0) return `:${min}`;
  return (h & 0xffff) === 0 ? `${maj}:` : `${maj}:${min}`;
}

/** One comparable line per qdisc: "dev kind handle parent". */
function fromDump(qdiscs: readonly QdiscInfo[], names: Map<number, string>): string[] {
  return qdiscs.map((q) => `${names.get(q.ifindex) ?? `#${q.ifindex}`} ${q.kind} ${(q.handle >>> 16).toString(16)}: ${classid(q.parent)}`).sort();
}
function fromTc(json: string): string[] {
  const list = JSON.parse(json) as { dev: string; kind: string; handle: string; root?: boolean; parent?: string }[];
  return list.map((q) => `${q.dev} ${q.kind} ${q.handle} ${q.root ? 'root' : q.parent}`).sort();
}
function ifnames(ipLinkJson: string): Map<number, string> {
  return new Map((JSON.parse(ipLinkJson) as { ifindex: number; ifname: string }[]).map((l) => [l.ifindex, l.ifname]));
}

interface CheckOutput {
  support: TxtimeSupport;
  qdiscs: QdiscInfo[] | { error: string };
  notes: string[] | { error: string };
}

async function check(topo: Topology, ns: string): Promise<CheckOutput> {
  const p = topo.runNode(ns, FIXTURE);
  const exit = await p.waitExit(30_000);
  assert.equal(exit.code, 0, `txtime-check failed in ${ns}:\n${p.stdout()}\n${p.stderr()}`);
  const out = p.jsonLines<CheckOutput>()[0];
  assert.ok(out, `no JSON from txtime-check:\n${p.stdout()}\n${p.stderr()}`);
  return out;
}

/** Compares the fixture's dump with `tc -j qdisc show` inside `ns`. */
async function assertMatchesTc(topo: Topology, ns: string, out: CheckOutput): Promise<void> {
  assert.ok(Array.isArray(out.qdiscs), `dump failed: ${JSON.stringify(out.qdiscs)}`);
  const names = ifnames(await topo.ip(ns, ['-j', 'link', 'show']));
  assert.deepEqual(fromDump(out.qdiscs, names), fromTc(await topo.exec(ns, 'tc', ['-j', 'qdisc', 'show'])));
}

/** Until the kernel's linkwatch reports `up` (it may lag `ip link set up`). */
async function waitUp(topo: Topology, ns: string, ifname: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const state = (await topo.exec(ns, 'cat', [`/sys/class/net/${ifname}/operstate`])).trim();
    if (state === 'up') return;
    if (Date.now() > deadline) throw new Error(`${ns}/${ifname} is still '${state}'`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('root namespace: the rtnetlink dump agrees with `tc -j qdisc show`', { skip: tcSkipReason(), timeout: 30_000 }, async (t) => {
  const qdiscs = dumpQdiscs();
  const names = ifnames(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' }));
  const tc = execFileSync('tc', ['-j', 'qdisc', 'show'], { encoding: 'utf8' });
  assert.deepEqual(fromDump(qdiscs, names), fromTc(tc));
  t.diagnostic(`root namespace qdiscs: ${fromDump(qdiscs, names).join(', ')}`);
  const { txtimeSupport } = await import('../../src/sys/txtime.js');
  const s = txtimeSupport();
  t.diagnostic(s.detail);
  assert.equal(s.socketOption.accepted, true, s.socketOption.reason); // Linux 4.19+
  for (const i of s.perInterface) {
    const root = qdiscs.find((q) => q.ifindex === i.ifindex && q.parent === TC_H_ROOT);
    assert.equal(i.root, root?.kind);
    assert.equal(i.honours, i.root === 'fq' || i.root === 'etf' || (i.children.length > 0 && i.children.every((k) => k === 'fq' || k === 'etf')));
  }
});

test('in a namespace: veth with noqueue, then a 4-queue veth under mq', { skip, timeout: 120_000 }, async (t) => {
  await withTopology({ namespaces: ['a', 'b'], links: [{ a: { ns: 'a' }, b: { ns: 'b' } }] }, async (topo) => {
    const veth = topo.ifname('a', 'b');
    await waitUp(topo, 'a', veth);

    const first = await check(topo, 'a');
    t.diagnostic(`namespace a: ${first.support.detail}`);
    await assertMatchesTc(topo, 'a', first);
    const dump = first.qdiscs as QdiscInfo[];
    assert.ok(dump.some((q) => q.kind === 'noqueue' && q.parent === TC_H_ROOT && q.ifindex === first.support.perInterface[0]?.ifindex));
    assert.equal(first.support.usable, false);
    assert.equal(first.support.socketOption.accepted, true);
    assert.deepEqual(
      first.support.perInterface.map((i) => [i.name, i.root, i.honours]),
      [[veth, 'noqueue', false]],
    );
    assert.equal(first.support.detail, `SO_TXTIME: not used — ${veth}'s root qdisc is noqueue (needs fq or etf); Sluice paces in its send worker`);
    assert.ok(Array.isArray(first.notes), `batched probe failed: ${JSON.stringify(first.notes)}`);
    assert.ok(first.notes.includes(first.support.detail), `doctor notes lack the SO_TXTIME line: ${JSON.stringify(first.notes)}`);

    // Both ends inside namespace a: nothing appears in the root namespace.
    await topo.ip('a', ['link', 'add', 'mq0', 'numtxqueues', '4', 'type', 'veth', 'peer', 'name', 'mq1', 'numtxqueues', '4']);
    for (const dev of ['mq0', 'mq1']) await topo.ip('a', ['link', 'set', dev, 'up']);
    await topo.exec('a', 'tc', ['qdisc', 'add', 'dev', 'mq0', 'root', 'handle', '8001:', 'mq']);
    await waitUp(topo, 'a', 'mq0');
    await waitUp(topo, 'a', 'mq1');

    const second = await check(topo, 'a');
    t.diagnostic(`namespace a with mq: ${second.support.detail}`);
    await assertMatchesTc(topo, 'a', second);
    const mq0 = second.support.perInterface.find((i) => i.name === 'mq0');
    assert.ok(mq0, JSON.stringify(second.support.perInterface));
    assert.equal(mq0.root, 'mq');
    assert.equal(mq0.children.length, 4);
    assert.equal(mq0.honours, false);
    assert.match(second.support.detail, new RegExp(`mq0's root qdisc is mq with ${mq0.children[0]} children`));
    assert.match(second.support.detail, new RegExp(`${veth}'s root qdisc is noqueue`));
    assert.equal(second.support.usable, false);

    // The positive path needs fq in the kernel: try it, and say so when it is missing.
    let fq = true;
    try {
      await topo.exec('a', 'tc', ['qdisc', 'add', 'dev', 'mq0', 'parent', '8001:1', 'fq']);
      for (const minor of [2, 3, 4]) await topo.exec('a', 'tc', ['qdisc', 'add', 'dev', 'mq0', 'parent', `8001:${minor}`, 'fq']);
      for (const dev of [veth, 'mq1']) await topo.exec('a', 'tc', ['qdisc', 'replace', 'dev', dev, 'root', 'fq']);
    } catch (e) {
      fq = false;
      t.diagnostic(`positive path not exercised: this kernel has no fq qdisc (${(e as Error).message.split('\n')[0]})`);
    }
    if (fq) {
      const third = await check(topo, 'a');
      t.diagnostic(`namespace a with fq: ${third.support.detail}`);
      await assertMatchesTc(topo, 'a', third);
      assert.equal(third.support.usable, true, third.support.detail);
      assert.ok(third.support.perInterface.every((i) => i.honours));
    }
  });
});

test('a dump longer than one read (80 veth ends) is read to NLMSG_DONE and matches tc', { skip, timeout: 120_000 }, async (t) => {
  await withTopology({ namespaces: ['m'] }, async (topo) => {
    const pairs = 40;
    const batch = Array.from({ length: pairs }, (_, i) => [`link add m${i} type veth peer name n${i}`, `link set m${i} up`, `link set n${i} up`]).flat();
    await topo.ip('m', ['-batch', '-'], { input: `${batch.join('\n')}\n` });
    const out = await check(topo, 'm');
    await assertMatchesTc(topo, 'm', out);
    const dump = out.qdiscs as QdiscInfo[];
    // Each message is ~200 bytes with its statistics: the kernel splits this over several reads.
    t.diagnostic(`${dump.length} qdiscs in the dump`);
    assert.equal(dump.filter((q) => q.kind === 'noqueue').length, 2 * pairs + 1);
    assert.equal(out.support.usable, false);
  });
});
