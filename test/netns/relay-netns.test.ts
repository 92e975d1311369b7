/**
 * End-to-end through the real CLI across three network namespaces:
 *
 *   src (10.201.1.2 allowed, 10.201.1.3 not) --veth-- relay --veth-- dst
 *                                10.201.1.1:5000  10.201.2.1   10.201.2.2:6000
 *
 * `sluice relay` runs inside `relay`; it is an application-level relay, so
 * `relay` needs no IP forwarding and `src` needs no route to `dst`. Checks:
 * every allowed datagram arrives intact and exactly once, the disallowed
 * sender's datagrams are dropped and counted as sourceNotAllowed, the
 * --json `ready`/`final` lines follow the CLI contract, and SIGTERM exits 0.
 * The same scenario runs over IPv6.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { NETNS_PREFIX, listTestNamespaces, rootSkipReason, withTopology, type NsProcess } from '../../harness/netns/netns.js';

const skip = rootSkipReason();
const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const SEND = fileURLToPath(new URL('../fixtures/udp-send.ts', import.meta.url));
const COUNT = fileURLToPath(new URL('../fixtures/udp-count.ts', import.meta.url));

const ALLOWED = 2000;
const DISALLOWED = 100;
/** 7 x 188: a typical MPEG-TS-over-UDP datagram. */
const SIZE = 1316;

interface Scenario {
  listen: string;
  to: string;
  allow: string;
  /** Bind address of the allowed sender, and of the disallowed one. */
  allowedSrc: string;
  deniedSrc: string;
  /** Receiver bind, udp-count syntax. */
  rxBind: string;
  /** What the receiver must see as the source of every relayed datagram. */
  relayedFrom: string;
}

const v4: Scenario = {
  listen: 'udp://10.201.1.1:5000',
  to: 'udp://10.201.2.2:6000',
  allow: '10.201.1.2/32',
  allowedSrc: '10.201.1.2',
  deniedSrc: '10.201.1.3',
  rxBind: '10.201.2.2:6000',
  // The portable tier sends same-family copies from the listen socket,
  // which is bound to 10.201.1.1:5000, so that is the source on the wire
  // (Linux uses a bound socket's address even when leaving via another
  // interface). The port is what a receiver keys on.
  relayedFrom: '10.201.1.1:5000',
};

const v6: Scenario = {
  listen: 'udp://[fd00:201:1::1]:5000',
  to: 'udp://[fd00:201:2::2]:6000',
  allow: 'fd00:201:1::2/128',
  allowedSrc: 'fd00:201:1::2',
  deniedSrc: 'fd00:201:1::3',
  rxBind: '[fd00:201:2::2]:6000',
  relayedFrom: '[fd00:201:1::1]:5000',
};

const spec = {
  namespaces: ['src', 'relay', 'dst'],
  links: [
    {
      // Two addresses on the src end: .2/::2 is allowed, .3/::3 is not.
      a: { ns: 'src', ipv4: ['10.201.1.2/24', '10.201.1.3/24'], ipv6: ['fd00:201:1::2/64', 'fd00:201:1::3/64'] },
      b: { ns: 'relay', ipv4: '10.201.1.1/24', ipv6: 'fd00:201:1::1/64' },
    },
    {
      a: { ns: 'relay', ipv4: '10.201.2.1/24', ipv6: 'fd00:201:2::1/64' },
      b: { ns: 'dst', ipv4: '10.201.2.2/24', ipv6: 'fd00:201:2::2/64' },
    },
  ],
  // Relayed datagrams carry the relay's src-side address (see relayedFrom).
  // A namespace inherits rp_filter from the host; if that is strict or
  // loose, dst would silently drop them without a route back, so give dst
  // one, as any real receiver would have (default route / return path).
  routes: [
    { ns: 'dst', args: ['10.201.1.0/24', 'via', '10.201.2.1'] },
    { ns: 'dst', args: ['fd00:201:1::/64', 'via', 'fd00:201:2::1'] },
  ],
};

function jsonEvent(proc: NsProcess, event: string): Record<string, any> {
  const found = proc.jsonLines<Record<string, any>>().filter((j) => j.event === event);
  assert.equal(found.length, 1, `expected one '${event}' line from ${proc.description}\nstdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`);
  return found[0]!;
}

async function runSender(proc: NsProcess, count: number): Promise<void> {
  const exit = await proc.waitExit(30_000);
  const done = jsonEvent(proc, 'done');
  assert.equal(exit.code, 0, `sender failed: ${proc.stdout()} ${proc.stderr()}`);
  assert.equal(done.sent, count);
}

async function relayScenario(s: Scenario): Promise<void> {
  await withTopology(spec, async (topo) => {
    const rx = topo.runNode('dst', COUNT, [
      '--bind',
      s.rxBind,
      '--expect',
      String(ALLOWED),
      '--stream',
      '1',
      // Long enough that anything relayed late or twice is still counted.
      '--linger-ms',
      '500',
      '--timeout',
      '60000',
    ]);
    await rx.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });

    const relay = topo.runNode('relay', CLI, ['relay', '--listen', s.listen, '--to', s.to, '--allow', s.allow, '--json']);
    // First run compiles the CLI through tsx: allow for a slow, busy machine.
    await relay.waitForLine(/"event":"ready"/, { timeoutMs: 60_000, stream: 'stdout' });
    const ready = jsonEvent(relay, 'ready');
    assert.ok(Array.isArray(ready.flows) && ready.flows.length === 1, `ready.flows: ${JSON.stringify(ready)}`);

    // Disallowed first: the relay handles its socket in order, so once every
    // allowed datagram is through, these were all seen and dropped. A buggy
    // relay that forwarded them would show stream 2 at the receiver.
    await runSender(
      topo.runNode('src', SEND, [
        '--to',
        s.listen,
        '--bind',
        s.deniedSrc,
        '--stream',
        '2',
        '--count',
        String(DISALLOWED),
        '--size',
        String(SIZE),
        '--burst',
        '50',
        '--gap-ms',
        '1',
        '--timeout',
        '30000',
      ]),
      DISALLOWED,
    );
    await runSender(
      topo.runNode('src', SEND, [
        '--to',
        s.listen,
        '--bind',
        s.allowedSrc,
        '--stream',
        '1',
        '--count',
        String(ALLOWED),
        '--size',
        String(SIZE),
        '--burst',
        '50',
        '--gap-ms',
        '1',
        '--timeout',
        '30000',
      ]),
      ALLOWED,
    );

    const rxExit = await rx.waitExit(70_000);
    const got = jsonEvent(rx, 'done');
    assert.equal(rxExit.code, 0, `receiver: ${JSON.stringify(got)}`);
    assert.equal(got.timedOut, false);
    assert.equal(got.missing, 0, `missing seqs, e.g. ${JSON.stringify(got.missingSample)}`);
    assert.equal(got.malformed, 0);
    assert.equal(got.received, ALLOWED);
    assert.equal(got.bytes, ALLOWED * SIZE);
    assert.deepEqual(got.streams, { '1': { unique: ALLOWED, duplicates: 0, outOfRange: 0 } });
    assert.deepEqual(got.sources, { [s.relayedFrom]: ALLOWED });

    relay.signal('SIGTERM');
    const relayExit = await relay.waitExit(15_000);
    assert.deepEqual(relayExit, { code: 0, signal: null }, `relay stderr:\n${relay.stderr()}`);
    const final = jsonEvent(relay, 'final');
    assert.equal(final.flows.length, 1);
    const f = final.flows[0];
    assert.equal(typeof f.name, 'string');
    assert.equal(f.type, 'redirect');
    // packetsIn counts every datagram received, dropped ones included.
    assert.equal(f.packetsIn, ALLOWED + DISALLOWED);
    assert.equal(f.bytesIn, (ALLOWED + DISALLOWED) * SIZE);
    assert.equal(f.packetsOut, ALLOWED);
    assert.equal(f.bytesOut, ALLOWED * SIZE);
    assert.deepEqual(f.drops, {
      sourceNotAllowed: DISALLOWED,
      malformed: 0,
      tooLarge: 0,
      sendError: 0,
      queueFull: 0,
      relayLoop: 0,
      unreachable: 0,
      suspended: 0,
    });
    assert.equal(f.destinations.length, 1);
    const d = f.destinations[0];
    assert.equal(d.to, s.to);
    assert.equal(d.packetsOut, ALLOWED);
    assert.equal(d.bytesOut, ALLOWED * SIZE);
    assert.deepEqual(d.drops, { sendError: 0, queueFull: 0, unreachable: 0, suspended: 0 });
  });
}

test('sluice relay between namespaces over IPv4: allow list, counters, clean exit', { skip, timeout: 180_000 }, () => relayScenario(v4));

test('sluice relay between namespaces over IPv6: allow list, counters, clean exit', { skip, timeout: 180_000 }, () => relayScenario(v6));

test('relay tests left no namespaces behind', { skip }, () => {
  assert.deepEqual(
    listTestNamespaces().filter((n) => n.startsWith(`${NETNS_PREFIX}${process.pid}-`)),
    [],
  );
});
