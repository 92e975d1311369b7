/**
 * Self-test of harness/netns/netns.ts: the topology really carries UDP (v4
 * and v6, direct and routed), nothing lands in the root namespace, and
 * cleanup happens on every path: destroy(), a throwing body, a failed
 * build, process exit, uncaught exceptions, signals, and (via the stale
 * sweep) even SIGKILL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { NsProcess } from '../../harness/netns/netns.js';
import {
  NETNS_PREFIX,
  REPO_ROOT,
  createTopology,
  listTestNamespaces,
  rootSkipReason,
  sweepStaleNamespaces,
  waitForLine,
  withTopology,
  type Topology,
} from '../../harness/netns/netns.js';

const skip = rootSkipReason();
const SEND = fileURLToPath(new URL('../fixtures/udp-send.ts', import.meta.url));
const COUNT = fileURLToPath(new URL('../fixtures/udp-count.ts', import.meta.url));
const CRASH = fileURLToPath(new URL('../fixtures/netns-crash.ts', import.meta.url));

/** Alive and not a zombie (an orphan may sit unreaped for a moment). */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function lastJson(proc: NsProcess, event: string): Record<string, unknown> {
  const found = proc.jsonLines().filter((j) => j.event === event);
  assert.ok(found.length > 0, `no '${event}' line from ${proc.description}\n${proc.stdout()}\n${proc.stderr()}`);
  return found[found.length - 1]!;
}

/** Send `count` datagrams from `from` (bound to `srcAddr`) to `dst`, count them in `to`. */
async function udpRoundTrip(topo: Topology, from: string, srcAddr: string, to: string, dst: string, count: number): Promise<Record<string, unknown>> {
  const rx = topo.runNode(to, COUNT, ['--bind', dst, '--expect', String(count), '--timeout', '15000']);
  await rx.waitForLine(/"event":"ready"/, { timeoutMs: 15_000 });
  const tx = topo.runNode(from, SEND, ['--to', dst, '--bind', srcAddr, '--count', String(count), '--size', '200', '--timeout', '15000']);
  assert.equal((await tx.waitExit(20_000)).code, 0, `sender failed: ${tx.stdout()} ${tx.stderr()}`);
  assert.equal((await rx.waitExit(20_000)).code, 0, `receiver failed: ${rx.stdout()} ${rx.stderr()}`);
  return lastJson(rx, 'done');
}

const twoHosts = {
  namespaces: ['a', 'b'],
  links: [
    {
      a: { ns: 'a', ipv4: '10.199.1.1/24', ipv6: 'fd00:199:1::1/64' },
      b: { ns: 'b', ipv4: '10.199.1.2/24', ipv6: 'fd00:199:1::2/64' },
    },
  ],
};

test('two namespaces linked by veth carry UDP over IPv4 and IPv6', { skip, timeout: 60_000 }, async () => {
  await withTopology(twoHosts, async (topo) => {
    assert.equal(topo.realNames.length, 2);
    for (const n of topo.realNames) {
      assert.ok(n.startsWith(`${NETNS_PREFIX}${process.pid}-`), n);
      assert.ok(listTestNamespaces().includes(n));
    }

    // Safety check: the veth ends exist only inside the test namespaces.
    const ifA = topo.ifname('a', 'b');
    const ifB = topo.ifname('b', 'a');
    assert.ok(ifA.length <= 15 && ifB.length <= 15);
    const rootLinks = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
    for (const n of topo.realNames) assert.ok(!rootLinks.includes(n), 'a veth end is in the root namespace');
    assert.match(await topo.ip('a', ['-o', 'addr', 'show', 'dev', ifA]), /10\.199\.1\.1\/24/);
    // nodad: the IPv6 address must not be tentative, i.e. usable right now.
    const v6 = await topo.ip('b', ['-o', '-6', 'addr', 'show', 'dev', ifB]);
    assert.match(v6, /fd00:199:1::2\/64/);
    assert.doesNotMatch(v6, /tentative/);

    const r4 = await udpRoundTrip(topo, 'a', '10.199.1.1', 'b', '10.199.1.2:7000', 20);
    assert.equal(r4.valid, 20);
    assert.equal(r4.malformed, 0);
    assert.equal(r4.missing, 0);
    assert.deepEqual(
      Object.keys(r4.sources as object).map((k) => k.replace(/:\d+$/, '')),
      ['10.199.1.1'],
    );

    const r6 = await udpRoundTrip(topo, 'b', 'fd00:199:1::2', 'a', '[fd00:199:1::1]:7000', 20);
    assert.equal(r6.valid, 20);
    assert.equal(r6.missing, 0);
    assert.deepEqual(
      Object.keys(r6.sources as object).map((k) => k.replace(/:\d+$/, '')),
      ['[fd00:199:1::2]'],
    );

    // exec() returns stdout and throws with stderr.
    assert.match(await topo.exec('a', 'ip', ['-o', 'link', 'show', 'lo']), /UP/);
    await assert.rejects(topo.exec('a', 'ip', ['link', 'show', 'no-such-dev']), /no-such-dev|does not exist/i);
  });
});

test('routes and forwarding: a -> r -> b routed at the IP layer', { skip, timeout: 60_000 }, async () => {
  await withTopology(
    {
      namespaces: ['a', 'r', 'b'],
      links: [
        { a: { ns: 'a', ipv4: '10.199.11.2/24', ipv6: 'fd00:199:11::2/64' }, b: { ns: 'r', ipv4: '10.199.11.1/24', ipv6: 'fd00:199:11::1/64' } },
        { a: { ns: 'r', ipv4: '10.199.12.1/24', ipv6: 'fd00:199:12::1/64' }, b: { ns: 'b', ipv4: '10.199.12.2/24', ipv6: 'fd00:199:12::2/64' } },
      ],
      forwarding: ['r'],
      routes: [
        { ns: 'a', args: ['10.199.12.0/24', 'via', '10.199.11.1'] },
        { ns: 'a', args: ['fd00:199:12::/64', 'via', 'fd00:199:11::1'] },
        { ns: 'b', args: ['10.199.11.0/24', 'via', '10.199.12.1'] },
        { ns: 'b', args: ['fd00:199:11::/64', 'via', 'fd00:199:12::1'] },
        { ns: 'a', args: ['unreachable', '10.199.99.0/24'] },
      ],
    },
    async (topo) => {
      assert.equal((await topo.exec('r', 'sysctl', ['-n', 'net.ipv4.ip_forward'])).trim(), '1');
      assert.equal((await topo.exec('a', 'sysctl', ['-n', 'net.ipv4.ip_forward'])).trim(), '0');
      assert.match(await topo.ip('a', ['route', 'show']), /unreachable 10\.199\.99\.0\/24/);

      // Routed, not relayed: b sees a's own address as the source.
      const r4 = await udpRoundTrip(topo, 'a', '10.199.11.2', 'b', '10.199.12.2:7000', 10);
      assert.equal(r4.missing, 0);
      assert.deepEqual(
        Object.keys(r4.sources as object).map((k) => k.replace(/:\d+$/, '')),
        ['10.199.11.2'],
      );
      const r6 = await udpRoundTrip(topo, 'a', 'fd00:199:11::2', 'b', '[fd00:199:12::2]:7000', 10);
      assert.equal(r6.missing, 0);
      assert.deepEqual(
        Object.keys(r6.sources as object).map((k) => k.replace(/:\d+$/, '')),
        ['[fd00:199:11::2]'],
      );

      // The unreachable route makes the kernel refuse the send.
      const tx = topo.runNode('a', SEND, ['--to', '10.199.99.9:7000', '--count', '1', '--timeout', '10000']);
      assert.equal((await tx.waitExit(15_000)).code, 1);
      assert.match(String(lastJson(tx, 'done').firstError), /EHOSTUNREACH|ENETUNREACH/);
    },
  );
});

test('destroy() kills children, deletes the namespaces and is idempotent', { skip, timeout: 30_000 }, async () => {
  const topo = await createTopology(twoHosts);
  const names = topo.realNames;
  // `sleep` ignores nothing, but a shell trapping TERM proves the SIGKILL fallback.
  const stubborn = topo.spawn('a', 'sh', ['-c', 'trap "" TERM; echo armed; sleep 30']);
  const plain = topo.spawn('b', 'sleep', ['30']);
  await stubborn.waitForLine(/armed/);
  const started = Date.now();
  await Promise.all([topo.destroy(500), topo.destroy(500)]);
  await topo.destroy(); // third call after completion: no-op
  assert.ok(Date.now() - started < 10_000);
  assert.equal(stubborn.exitStatus?.signal, 'SIGKILL');
  assert.ok(plain.exitStatus !== undefined);
  const left = listTestNamespaces();
  for (const n of names) assert.ok(!left.includes(n), `${n} still exists`);
  assert.throws(() => topo.nsName('a'), /destroyed/);
});

test('withTopology cleans up when the body throws', { skip, timeout: 30_000 }, async () => {
  let names: string[] = [];
  let pid: number | undefined;
  await assert.rejects(
    withTopology(twoHosts, async (topo) => {
      names = topo.realNames;
      pid = topo.spawn('a', 'sleep', ['30']).pid;
      throw new Error('body failed');
    }),
    /body failed/,
  );
  assert.equal(names.length, 2);
  const left = listTestNamespaces();
  for (const n of names) assert.ok(!left.includes(n), `${n} still exists`);
  assert.ok(pid !== undefined);
  await waitUntil(() => !pidAlive(pid!), 5_000, 'child to die');
});

test('a build failure part-way removes what was already created', { skip, timeout: 30_000 }, async () => {
  const before = new Set(listTestNamespaces());
  await assert.rejects(
    createTopology({
      namespaces: ['a', 'b'],
      links: [{ a: { ns: 'a', ipv4: '10.199.2.1/24' }, b: { ns: 'b', ipv4: 'not-an-address' } }],
    }),
    /not-an-address/,
  );
  const leaked = listTestNamespaces().filter((n) => !before.has(n) && n.startsWith(`${NETNS_PREFIX}${process.pid}-`));
  assert.deepEqual(leaked, []);
  await assert.rejects(createTopology({ namespaces: ['bad name!'] }), /bad namespace name/);
  await assert.rejects(createTopology({ namespaces: ['a'], links: [{ a: { ns: 'a', ifname: 'x'.repeat(16) }, b: { ns: 'a' } }] }), /both ends/);
});

/**
 * Run the crash fixture in its own process (it touches the network only via
 * the helper, i.e. inside its own namespaces) and return what it built.
 */
async function crashChild(mode: string): Promise<{ proc: ReturnType<typeof spawn>; names: string[]; childPid: number; exit: Promise<number | null> }> {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // else the child thinks it is a node:test worker
  const proc = spawn(process.execPath, ['--import', 'tsx', CRASH, mode], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  try {
    await waitUntil(() => out.includes('\n'), 20_000, `crash fixture output (stderr: ${err})`);
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  const info = JSON.parse(out.split('\n')[0]!) as { names: string[]; childPid: number };
  return { proc, exit, ...info };
}

async function assertGone(names: string[], childPid: number): Promise<void> {
  const left = listTestNamespaces();
  for (const n of names) assert.ok(!left.includes(n), `${n} still exists`);
  await waitUntil(() => !pidAlive(childPid), 5_000, `pid ${childPid} inside the namespace to die`);
}

for (const mode of ['exit', 'throw'] as const) {
  test(
    `exit handler cleans up when the process ${mode === 'exit' ? 'calls process.exit()' : 'dies of an uncaught exception'}`,
    { skip, timeout: 40_000 },
    async () => {
      const c = await crashChild(mode);
      assert.equal(c.names.length, 2);
      assert.equal(await c.exit, 1);
      await assertGone(c.names, c.childPid);
    },
  );
}

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  test(`signal handler cleans up on ${sig}`, { skip, timeout: 40_000 }, async () => {
    const c = await crashChild('wait');
    const live = listTestNamespaces();
    for (const n of c.names) assert.ok(live.includes(n));
    c.proc.kill(sig);
    await c.exit;
    // Re-raised after cleanup, so it still dies of the signal.
    assert.equal(c.proc.signalCode, sig);
    await assertGone(c.names, c.childPid);
  });
}

test('after SIGKILL (no handler can run) the stale sweep removes the leftovers', { skip, timeout: 40_000 }, async () => {
  const c = await crashChild('wait');
  c.proc.kill('SIGKILL');
  await c.exit;
  const left = listTestNamespaces();
  for (const n of c.names) assert.ok(left.includes(n), 'expected leftovers after SIGKILL');
  assert.ok(pidAlive(c.childPid));
  const swept = sweepStaleNamespaces();
  for (const n of c.names) assert.ok(swept.includes(n));
  await assertGone(c.names, c.childPid);
});

test('waitForLine: matches past output, times out, and reports early exit', { skip, timeout: 30_000 }, async () => {
  await withTopology({ namespaces: ['a'] }, async (topo) => {
    const p = topo.spawn('a', 'sh', ['-c', 'echo hello; echo oops >&2; sleep 30']);
    await p.waitForLine(/oops/, { stream: 'stderr' });
    // Already printed: must still match.
    assert.equal(await waitForLine(p, /^hel+o$/), 'hello');
    await assert.rejects(p.waitForLine(/never/, { timeoutMs: 200 }), /timed out after 200 ms/);
    await assert.rejects(p.waitForLine(/oops/, { stream: 'stdout', timeoutMs: 200 }), /timed out/);
    const q = topo.spawn('a', 'sh', ['-c', 'echo bye; exit 3']);
    await assert.rejects(q.waitForLine(/never/, { timeoutMs: 5_000 }), /exited \(code 3/);
  });
});

test('no namespace of this process is left behind', { skip }, () => {
  const mine = listTestNamespaces().filter((n) => n.startsWith(`${NETNS_PREFIX}${process.pid}-`));
  assert.deepEqual(mine, []);
});
