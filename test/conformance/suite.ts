/**
 * The tier conformance suite: one set of behavioural tests that every tier
 * must pass unchanged. A tier's test file calls `defineConformanceSuite`
 * with a way to open a Sluice on that tier; nothing here knows which tier
 * it is testing.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Sluice, ClosedError, ConflictError, PolicyValidationError, SyscallError, type TierName } from '../../src/index.js';
import { openReceiver, openSender, sendGsoBurst, sendSequence, seqDatagram, seqOf, type Receiver } from '../../harness/traffic/udp.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { createDataPlane } from '../../src/dataplane/tiers.js';
import type { FlowPlan } from '../../src/policy/compile.js';
import type { Endpoint } from '../../src/wire/endpoint.js';
import type { FlowStats } from '../../src/dataplane/common/counters.js';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';
import { defineMediaConformance } from './media-suite.js';
import { rootSkipReason, withTopology, type NsProcess } from '../../harness/netns/netns.js';
import {
  COPIES,
  OTHER_ROUTE_V4,
  OTHER_ROUTE_V6,
  RAW_CASES,
  RP_CASES,
  casePayload,
  caseOf,
  type RawCase,
  type RpMode,
} from '../../harness/traffic/raw-cases.js';

export interface ConformanceTarget {
  tier: TierName;
  /** Why the tier cannot be tested here (printed by the runner), or undefined. */
  skip?: string;
  /** Kernel tier: the hook redirect flows run at (Sluice option kernelHook); also passed to the fixtures. */
  kernelHook?: 'xdp' | 'tcx' | 'auto';
  /** Batched tier: worker threads per flow (Sluice option workers; the fixtures in namespaces run one, so those two tests are skipped). */
  workers?: number;
}

/** Sequence numbers seen by a receiver, in arrival order. */
function seqs(r: Receiver): number[] {
  return r.received.map(seqOf);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Sends one JSON request line to a fixture and resolves with its JSON reply. */
async function request<T>(proc: NsProcess, req: object, timeoutMs = 60_000): Promise<T> {
  const next = proc.nextLine({ timeoutMs });
  proc.writeLine(JSON.stringify(req));
  const reply = JSON.parse(await next) as T & { event?: string; message?: string };
  if (reply.event === 'error') throw new Error(`${proc.description}: ${reply.message}`);
  return reply;
}

interface RawReport {
  /** x6: the v4 flow's IPv6 subscriber (of the other family: on the kernel tier a spilled one). */
  received: { flow: 'v4' | 'v6' | 'x6'; data: string; address: string; port: number }[];
  stats: Record<
    'v4' | 'v6',
    { packetsIn: number; bytesIn: number; packetsOut: number; bytesOut: number; drops: Record<string, number>; destinations: { packetsOut: number }[] }
  >;
  detail: Record<'v4' | 'v6', unknown>;
  listen: Record<'v4' | 'v6', { address: string; port: number }>;
}

/** True when `xs` is from..to-1 for some from/to (a contiguous run, no gaps or duplicates). */
function isContiguous(xs: number[]): boolean {
  return xs.every((x, i) => i === 0 || x === xs[i - 1]! + 1);
}

export function defineConformanceSuite(target: ConformanceTarget): void {
  const hook = { ...(target.kernelHook ? { kernelHook: target.kernelHook } : {}), ...(target.workers ? { workers: target.workers } : {}) };
  const fixtureSkip = rootSkipReason() ?? (target.workers ? 'the namespace fixtures run a one-worker plane' : undefined);
  const fixtureArgs = [target.tier, ...(target.kernelHook ? [target.kernelHook] : [])];
  describe(
    `conformance: ${target.tier} tier${target.kernelHook ? ` (kernelHook '${target.kernelHook}')` : ''}${target.workers ? ` (${target.workers} workers)` : ''}`,
    { skip: target.skip },
    () => {
      let s: Sluice;
      const cleanups: (() => Promise<void>)[] = [];
      const receiver = async (addr?: string) => {
        const r = await openReceiver(addr);
        cleanups.push(() => r.close());
        return r;
      };
      const sender = async (addr?: string) => {
        const x = await openSender(addr);
        cleanups.push(() => x.close());
        return x;
      };

      before(async () => {
        s = await Sluice.open({ tier: target.tier, ...hook });
        assert.equal(s.tier, target.tier);
      });
      after(async () => {
        for (const c of cleanups.splice(0)) await c();
        await s.close();
      });

      test('redirect delivers every datagram unchanged, in order, from the listen port', async () => {
        const dst = await receiver();
        const src = await sender();
        const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: '127.0.0.1' });
        await sendSequence(src, flow.listen, 500, { size: 200 });
        await dst.waitFor(500);
        assert.deepEqual(seqs(dst), range(0, 500));
        assert.ok(dst.received.every((r) => r.data.length === 200 && r.data.equals(seqDatagram(seqOf(r), 200))));
        assert.ok(dst.received.every((r) => r.port === flow.listen.port && r.address === '127.0.0.1'));
        const st = flow.stats();
        assert.equal(st.tier, target.tier);
        assert.equal(st.type, 'redirect');
        assert.equal(st.packetsIn, 500);
        assert.equal(st.bytesIn, 500 * 200);
        assert.equal(st.packetsOut, 500);
        assert.equal(st.bytesOut, 500 * 200);
        assert.deepEqual(st.drops, { sourceNotAllowed: 0, malformed: 0, tooLarge: 0, sendError: 0, queueFull: 0, relayLoop: 0, unreachable: 0, suspended: 0 });
        assert.deepEqual(st.destinations, [
          { to: dst.url, packetsOut: 500, bytesOut: 500 * 200, drops: { sendError: 0, queueFull: 0, unreachable: 0, suspended: 0 } },
        ]);
        await flow.remove();
      });

      test('redirect over IPv6 loopback', async () => {
        const dst = await receiver('::1');
        const src = await sender('::1');
        const flow = await s.apply({ type: 'redirect', listen: 'udp://[::1]:0', to: dst.url, allow: '::1/128' });
        await sendSequence(src, flow.listen, 200);
        await dst.waitFor(200);
        assert.deepEqual(seqs(dst), range(0, 200));
        assert.equal(flow.stats().packetsOut, 200);
        await flow.remove();
      });

      test("on a dual-stack listen, copies to IPv4 and IPv6 subscribers leave from the listen port, whatever the sender's family", async () => {
        const v4 = await receiver('127.0.0.1');
        const v6 = await receiver('::1');
        const src6 = await sender('::1');
        const src4 = await sender('127.0.0.1');
        const flow = await s.apply({ type: 'replicate', listen: 'udp://[::]:0', to: [v4.url, v6.url], allow: 'any' });
        await sendSequence(src6, { port: flow.listen.port, address: '::1' }, 100);
        await sendSequence(src4, { port: flow.listen.port, address: '127.0.0.1' }, 100);
        for (const r of [v4, v6]) {
          await r.waitFor(200);
          await r.settle();
          assert.equal(r.received.length, 200);
          const from = [...new Set(r.received.map((x) => `${x.address} ${x.port}`))];
          assert.deepEqual(from, [`${r === v4 ? '127.0.0.1' : '::1'} ${flow.listen.port}`], `copies to ${r.url} came from ${from.join(', ')}`);
        }
        const st = flow.stats();
        assert.equal(st.packetsIn, 200);
        assert.equal(st.packetsOut, 400);
        assert.deepEqual(
          st.destinations.map((d) => d.packetsOut),
          [200, 200],
        );
        await flow.remove();
      });

      test('replicate sends every datagram to every subscriber', async () => {
        const subs = await Promise.all(range(0, 5).map(() => receiver()));
        const src = await sender();
        const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: subs.map((r) => r.url), allow: '127.0.0.0/8' });
        await sendSequence(src, flow.listen, 400, { size: 1316 });
        for (const r of subs) {
          await r.waitFor(400);
          assert.deepEqual(seqs(r), range(0, 400));
        }
        const st = flow.stats();
        assert.equal(st.packetsIn, 400);
        assert.equal(st.packetsOut, 400 * 5);
        assert.equal(st.bytesOut, 400 * 5 * 1316);
        assert.deepEqual(
          st.destinations.map((d) => [d.to, d.packetsOut]),
          subs.map((r) => [r.url, 400]),
        );
        await flow.remove();
      });

      test('subscribers join and leave under traffic; the others lose nothing', async () => {
        const [a, b, c, d] = await Promise.all(range(0, 4).map(() => receiver()));
        const src = await sender();
        const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [a!.url, b!.url, c!.url], allow: '127.0.0.1' });
        const total = 3000;
        await sendSequence(src, flow.listen, total, {
          burst: 8,
          onProgress: async (seq) => {
            if (seq === 1000) await flow.addSubscriber(d!.url);
            if (seq === 2000) await flow.removeSubscriber(b!.url);
          },
        });
        for (const r of [a!, c!]) await r.waitFor(total);
        await d!.settle();
        await b!.settle();
        for (const r of [a!, c!]) assert.deepEqual(seqs(r), range(0, total), 'steady subscriber lost or reordered datagrams');
        // The leaver has a contiguous prefix, the joiner a contiguous suffix:
        // nothing skipped around the change, nothing doubled.
        const bs = seqs(b!);
        const ds = seqs(d!);
        assert.equal(bs[0], 0);
        assert.ok(isContiguous(bs) && bs.length >= 2000, `leaver got ${bs.length}`);
        assert.equal(ds.at(-1), total - 1);
        assert.ok(isContiguous(ds) && ds.length >= 2000 - 1 && ds.length <= total - 1000 + 1, `joiner got ${ds.length}`);
        const st = flow.stats();
        assert.deepEqual(
          st.destinations.map((x) => x.to),
          [a!.url, c!.url, d!.url],
        );
        // Totals keep what the removed subscriber received.
        assert.equal(st.packetsOut, 2 * total + bs.length + ds.length);
        await flow.remove();
      });

      test('redirect target changes under traffic without loss', async () => {
        const [a, b] = await Promise.all([receiver(), receiver()]);
        const src = await sender();
        const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: a!.url, allow: '127.0.0.1' });
        await sendSequence(src, flow.listen, 1000, { onProgress: (seq) => (seq === 500 ? flow.update({ to: b!.url }) : undefined) });
        await b!.waitFor(1);
        await a!.settle();
        await b!.settle();
        assert.deepEqual([...seqs(a!), ...seqs(b!)], range(0, 1000));
        await flow.remove();
      });

      test('only allowed sources are relayed; others are dropped and counted', async () => {
        const dst = await receiver();
        const good = await sender('127.0.0.1');
        const bad = await sender('127.0.0.2');
        const flow = await s.apply({ type: 'replicate', listen: 'udp://0.0.0.0:0', to: [dst.url], allow: ['127.0.0.1/32', '192.0.2.0/24'] });
        const to = { port: flow.listen.port, address: '127.0.0.1' };
        await sendSequence(bad, to, 50);
        await sendSequence(good, to, 100);
        await dst.waitFor(100);
        await dst.settle();
        assert.deepEqual(seqs(dst), range(0, 100));
        let st = flow.stats();
        assert.equal(st.packetsIn, 150);
        assert.equal(st.drops.sourceNotAllowed, 50);
        assert.equal(st.packetsOut, 100);
        // Widen to a prefix that covers the second sender: relayed from then on.
        await flow.update({ allow: '127.0.0.0/8' });
        await sendSequence(bad, to, 30);
        await dst.waitFor(130);
        st = flow.stats();
        assert.equal(st.drops.sourceNotAllowed, 50);
        assert.equal(st.packetsOut, 130);
        await flow.remove();
      });

      test(
        'GSO bursts of 128 datagrams (GRO buffers of more than 64 segments) reach every subscriber byte-exact, with exact counters',
        { skip: probeBatchedIo().gsoMaxSegments >= 128 ? undefined : 'the sender needs UDP GSO of 128 segments (Linux 6.9+)' },
        async () => {
          // One sendmmsg of 64 GSO messages: a relay reading with UDP_GRO gets
          // them as 64 buffers of 128 datagrams, most of them in one recvmmsg.
          const messages = 64;
          const segments = 128;
          const size = 64;
          const total = messages * segments;
          const subs = await Promise.all(range(0, 2).map(() => receiver()));
          const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: subs.map((r) => r.url), allow: '127.0.0.1' });
          assert.equal(await sendGsoBurst(flow.listen, { messages, segments, size }), messages);
          for (const r of subs) {
            await r.waitFor(total, 15_000);
            await r.settle();
            assert.equal(r.received.length, total);
            assert.deepEqual(seqs(r), range(0, total));
            const bad = r.received.filter((x) => !x.data.equals(seqDatagram(seqOf(x), size)));
            assert.equal(bad.length, 0, `${bad.length} datagrams differ from what was sent (first: ${bad[0]?.data.length} bytes)`);
          }
          const st = flow.stats();
          assert.equal(st.packetsIn, total);
          assert.equal(st.bytesIn, total * size);
          assert.equal(st.packetsOut, 2 * total);
          assert.equal(st.bytesOut, 2 * total * size);
          assert.ok(
            Object.values(st.drops).every((n) => n === 0),
            JSON.stringify(st.drops),
          );
          for (const d of st.destinations) {
            assert.equal(d.packetsOut, total);
            assert.equal(d.bytesOut, total * size);
          }
          await flow.remove();
        },
      );

      test("a flow without an allow list is rejected; 'any' must be explicit", async () => {
        const dst = await receiver();
        await assert.rejects(
          s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url } as never),
          (e: unknown) => e instanceof PolicyValidationError && e.issues.some((i) => i.path === 'allow'),
        );
        const src = await sender('127.0.0.3');
        const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
        await sendSequence(src, flow.listen, 10);
        await dst.waitFor(10);
        await flow.remove();
      });

      test('an unreachable subscriber does not stall or starve the others', async () => {
        const good = await receiver();
        // A port nobody listens on: the kernel answers with ICMP port unreachable.
        const closed = dgram.createSocket('udp4');
        await new Promise<void>((r) => closed.bind(0, '127.0.0.1', () => r()));
        const deadPort = closed.address().port;
        await new Promise<void>((r) => closed.close(() => r()));
        const src = await sender();
        const dead = `udp://127.0.0.1:${deadPort}`;
        const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [dead, good.url], allow: '127.0.0.1' });
        await sendSequence(src, flow.listen, 1000);
        await good.waitFor(1000);
        assert.deepEqual(seqs(good), range(0, 1000));
        // The ICMP errors come back asynchronously: wait for the first.
        for (let i = 0; i < 100 && flow.stats().destinations.find((x) => x.to === dead)!.drops.unreachable === 0; i++)
          await new Promise((r) => setTimeout(r, 50));
        const st = flow.stats();
        const deadStats = st.destinations.find((x) => x.to === dead)!;
        const goodStats = st.destinations.find((x) => x.to === good.url)!;
        // Each copy to the dead port was sent or counted as a send error: none vanishes.
        assert.equal(deadStats.packetsOut + deadStats.drops.sendError, 1000);
        // Every tier reads the ICMP port unreachable errors its copies draw
        // (at most one per copy: the kernel rate-limits ICMP), per destination.
        assert.ok(deadStats.drops.unreachable > 0 && deadStats.drops.unreachable <= 1000, `unreachable: ${deadStats.drops.unreachable}`);
        assert.equal(deadStats.lastError, 'ECONNREFUSED');
        assert.equal(st.drops.unreachable, deadStats.drops.unreachable);
        // A pending ICMP error of the dead subscriber never costs the good one a copy.
        assert.deepEqual(goodStats.drops, { sendError: 0, queueFull: 0, unreachable: 0, suspended: 0 });
        assert.equal(goodStats.packetsOut, 1000);
        await flow.remove();
      });

      test('suspendAfterErrors suspends subscribers the network refuses (either address family), retries them later, and spares the others', async () => {
        const good = await receiver();
        // Ports nobody listens on, one per family: the IPv6 one is served
        // from another socket than the listen socket on every tier.
        const closedPort = async (type: 'udp4' | 'udp6', host: string) => {
          const c = dgram.createSocket(type);
          await new Promise<void>((r) => c.bind(0, host, () => r()));
          const port = c.address().port;
          await new Promise<void>((r) => c.close(() => r()));
          return port;
        };
        const dead = [`udp://127.0.0.1:${await closedPort('udp4', '127.0.0.1')}`, `udp://[::1]:${await closedPort('udp6', '::1')}`];
        const src = await sender();
        const flow = await s.apply({
          type: 'replicate',
          listen: 'udp://127.0.0.1:0',
          to: [...dead, good.url],
          allow: '127.0.0.1',
          suspendAfterErrors: 3,
          suspendRetryMs: 200,
        });
        const deadStats = () => dead.map((to) => flow.stats().destinations.find((x) => x.to === to)!);
        let seq = 0;
        const sendSome = async (n: number) => {
          for (let i = 0; i < n; i++) await src.send(seqDatagram(seq++), flow.listen.port, '127.0.0.1');
          await new Promise((r) => setTimeout(r, 10));
        };
        // Until both are suspended (bounded: 2000 datagrams).
        while (deadStats().some((d) => d.drops.suspended === 0) && seq < 2000) await sendSome(10);
        const first = deadStats();
        for (const d of first) {
          assert.ok(d.drops.suspended > 0, `never suspended: ${JSON.stringify(d)}`);
          assert.ok(d.drops.unreachable >= 3, `suspended after ${d.drops.unreachable} errors`);
        }
        // Retries: copies leave again after the wait, draw errors, and each is suspended again.
        const retried = () => deadStats().every((d, i) => d.packetsOut > first[i]!.packetsOut && d.drops.suspended > first[i]!.drops.suspended);
        while (!retried() && seq < 20_000) await sendSome(10);
        assert.ok(retried(), `not tried again and suspended again: ${JSON.stringify(deadStats())} after ${JSON.stringify(first)}`);
        // Copies were sent, refused by the OS, or skipped while suspended: none vanishes.
        for (const d of deadStats()) assert.equal(d.packetsOut + d.drops.sendError + d.drops.suspended, seq, JSON.stringify(d));
        await good.waitFor(seq);
        assert.deepEqual(seqs(good), range(0, seq));
        const st = flow.stats();
        assert.equal(st.destinations.find((x) => x.to === good.url)!.packetsOut, seq);
        assert.equal(
          st.drops.suspended,
          deadStats().reduce((n, d) => n + d.drops.suspended, 0),
        );
        await flow.remove();
      });

      test(
        'subscribers the kernel refuses (EHOSTUNREACH, ENETUNREACH) are counted per destination; the others get everything',
        { skip: fixtureSkip },
        async () => {
          // A namespace with no links: the refused copies cannot leave it.
          await withTopology({ namespaces: ['unreach'], routes: [{ ns: 'unreach', args: ['unreachable', '10.202.9.0/24'] }] }, async (topo) => {
            const child = topo.runNode('unreach', 'test/fixtures/unreachable-subscribers.ts', fixtureArgs);
            const exit = await child.waitExit(30_000);
            assert.equal(exit.code, 0, child.stderr());
            const out = child.jsonLines<{
              goodSeqs: number[];
              stats: { destinations: { to: string; packetsOut: number; drops: { sendError: number }; lastError?: string }[] };
            }>()[0]!;
            assert.deepEqual(out.goodSeqs, range(0, 500));
            const [unreach, good, noRoute] = out.stats.destinations;
            assert.equal(good!.packetsOut, 500);
            assert.equal(unreach!.drops.sendError, 500);
            assert.equal(unreach!.lastError, 'EHOSTUNREACH');
            assert.equal(noRoute!.drops.sendError, 500);
            assert.equal(noRoute!.lastError, 'ENETUNREACH');
          });
        },
      );

      test(
        "raw frames (lying lengths, bad checksums, IP options, fragments, other hosts, martian and spoofed sources) get the stack's verdict; copies leave from the listen port",
        { skip: fixtureSkip, timeout: 240_000 },
        async () => {
          const links = [
            { a: { ns: 'relay', ifname: 'ra', ipv4: '10.210.1.1/24', ipv6: 'fd00:210::1/64' }, b: { ns: 'peer', ifname: 'pb' } },
            // A second way out of the relay namespace: a strict reverse-path check refuses, on ra, sources routed through rd.
            { a: { ns: 'relay', ifname: 'rd' }, b: { ns: 'peer', ifname: 'pd' } },
          ];
          await withTopology({ namespaces: ['relay', 'peer'], links }, async (topo) => {
            await topo.addRoute('relay', [OTHER_ROUTE_V4, 'dev', 'rd']);
            await topo.addRoute('relay', [OTHER_ROUTE_V6, 'dev', 'rd']);
            const relay = topo.runNode('relay', 'test/fixtures/raw-relay.ts', fixtureArgs, { stdin: 'pipe' });
            const runs: [RpMode, readonly RawCase[]][] = [
              [1, [...RAW_CASES, ...RP_CASES]],
              [2, RP_CASES],
              [0, RP_CASES],
            ];
            const problems: string[] = [];
            for (const [rp, cases] of runs) {
              const ready = await request<{ v4port: number; v6port: number; mac: string }>(relay, { op: 'start', rp });
              const inject = topo.runNode('peer', 'test/fixtures/raw-inject.ts', [
                '--if',
                'pb',
                '--mac',
                ready.mac,
                '--v4port',
                String(ready.v4port),
                '--v6port',
                String(ready.v6port),
                '--cases',
                cases.map((c) => c.name).join(','),
              ]);
              const exit = await inject.waitExit(60_000);
              assert.equal(exit.code, 0, inject.stderr());
              const expected = new Map<string, { flow: 'v4' | 'v6'; data: Buffer | undefined }>();
              for (const c of cases) {
                for (let i = 0; i < COPIES; i++)
                  expected.set(`${c.name}#${i}`, { flow: c.family === 4 ? 'v4' : 'v6', data: c.delivered(casePayload(c.name, i), rp) });
              }
              const want = (f: 'v4' | 'v6') => [...expected.values()].filter((e) => e.flow === f && e.data);
              const report = await request<RawReport>(relay, { op: 'collect', v4: want('v4').length, v6: want('v6').length });
              const got = new Map<string, Buffer[]>();
              // The v4 flow's IPv6 subscriber gets what its IPv4 one gets (from a port of its family: see docs/POLICY.md).
              const v4Data = report.received
                .filter((r) => r.flow === 'v4')
                .map((r) => r.data)
                .sort();
              const x6Data = report.received
                .filter((r) => r.flow === 'x6')
                .map((r) => r.data)
                .sort();
              if (JSON.stringify(v4Data) !== JSON.stringify(x6Data)) {
                problems.push(
                  `rp=${rp}: the v4 flow's IPv6 subscriber got ${x6Data.map((d) => caseOf(Buffer.from(d, 'hex'))).join(',')}, its IPv4 one ${v4Data.map((d) => caseOf(Buffer.from(d, 'hex'))).join(',')}`,
                );
              }
              for (const r of report.received) {
                if (r.flow === 'x6') continue;
                const data = Buffer.from(r.data, 'hex');
                const key = caseOf(data) ?? `unknown:${r.data.slice(0, 40)}`;
                got.set(key, [...(got.get(key) ?? []), data]);
                const listen = report.listen[r.flow];
                if (r.port !== listen.port || r.address !== listen.address)
                  problems.push(`rp=${rp} ${key}: copy came from ${r.address}:${r.port}, not the listen address ${listen.address}:${listen.port}`);
              }
              for (const [key, e] of expected) {
                const g = got.get(key) ?? [];
                got.delete(key);
                if (!e.data && g.length)
                  problems.push(`rp=${rp} ${key}: the stack drops it, but ${g.length} cop${g.length === 1 ? 'y was' : 'ies were'} delivered`);
                if (e.data && (g.length !== 1 || !g[0]!.equals(e.data))) {
                  problems.push(
                    `rp=${rp} ${key}: the stack delivers ${e.data.length} bytes once, got ${g.length ? g.map((x) => `${x.length} bytes${x.equals(e.data!) ? '' : ' (other bytes)'}`).join(', ') : 'nothing'}`,
                  );
                }
              }
              for (const key of got.keys()) problems.push(`rp=${rp}: unexpected datagram ${key}`);
              for (const f of ['v4', 'v6'] as const) {
                const w = want(f);
                const bytes = w.reduce((n, e) => n + e.data!.length, 0);
                const st = report.stats[f];
                const subs = f === 'v4' ? 2 : 1;
                const seen = {
                  packetsIn: st.packetsIn,
                  bytesIn: st.bytesIn,
                  packetsOut: st.packetsOut,
                  bytesOut: st.bytesOut,
                  dests: st.destinations.map((d) => d.packetsOut),
                  drops: st.drops,
                };
                const should = {
                  packetsIn: w.length,
                  bytesIn: bytes,
                  packetsOut: subs * w.length,
                  bytesOut: subs * bytes,
                  dests: Array(subs).fill(w.length),
                  drops: { sourceNotAllowed: 0, malformed: 0, tooLarge: 0, sendError: 0, queueFull: 0, relayLoop: 0, unreachable: 0, suspended: 0 },
                };
                if (JSON.stringify(seen) !== JSON.stringify(should))
                  problems.push(
                    `rp=${rp} ${f} counters ${JSON.stringify(seen)}, expected ${JSON.stringify(should)} (detail ${JSON.stringify(report.detail[f])})`,
                  );
              }
            }
            relay.writeLine(JSON.stringify({ op: 'exit' }));
            assert.equal((await relay.waitExit(30_000)).code, 0, relay.stderr());
            assert.deepEqual(problems, []);
          });
        },
      );

      test('relay loops that got past validation do not circulate: datagrams from our own flow sockets are dropped (relayLoop)', async () => {
        // Built on the data plane directly: validation refuses these policies.
        const plane = await createDataPlane(target.tier, target.workers ? { workers: target.workers } : {});
        const plan = (name: string, listen: Endpoint, to: Endpoint[]): FlowPlan => ({
          name,
          type: 'replicate',
          listen,
          destinations: to,
          sources: { any: true },
          maxDatagramSize: 65507,
          payload: 'any',
          maxQueuedPackets: 4096,
        });
        const v4 = (address: string, port: number): Endpoint => ({ family: 4, address, port });
        try {
          // A cycle across two flows: a → b → a.
          const b = (await plane.addFlow('b', plan('b', v4('127.0.0.1', 0), []))).listen;
          const a = (await plane.addFlow('a', plan('a', v4('127.0.0.1', 0), [b]))).listen;
          await plane.updateFlow('b', plan('b', b, [a]));
          // A flow on a wildcard address subscribed to itself through 127.0.0.1.
          const c = (await plane.addFlow('c', plan('c', v4('0.0.0.0', 0), []))).listen;
          await plane.updateFlow('c', plan('c', c, [v4('127.0.0.1', c.port)]));
          // A dual-stack flow subscribed to itself as IPv4 (IPv4-mapped on the wire).
          const d = (await plane.addFlow('d', plan('d', { family: 6, address: '::', port: 0 }, []))).listen;
          await plane.updateFlow('d', plan('d', d, [v4('127.0.0.1', d.port)]));
          const src = await sender();
          const n = 10;
          for (let i = 0; i < n; i++) {
            await src.send(seqDatagram(i), a.port, '127.0.0.1');
            await src.send(seqDatagram(i), c.port, '127.0.0.1');
            await src.send(seqDatagram(i), d.port, '127.0.0.1');
          }
          const stats = () => Object.fromEntries(['a', 'b', 'c', 'd'].map((id) => [id, plane.flowStats(id)!])) as Record<string, FlowStats>;
          // Wait until nothing moves any more (a loop would keep the counters growing).
          let last = '';
          for (let waited = 0; waited < 10_000; waited += 100) {
            await new Promise((r) => setTimeout(r, 100));
            const now = JSON.stringify(stats());
            if (now === last && stats().b!.drops.relayLoop >= n && stats().c!.drops.relayLoop >= n) break;
            last = now;
          }
          const st = stats();
          // Every datagram crossed one flow-to-flow hop at most.
          for (const id of ['a', 'b', 'c', 'd']) assert.ok(st[id]!.packetsIn <= 3 * n, `flow ${id}: ${st[id]!.packetsIn} datagrams in: it circulates`);
          assert.equal(st.a!.packetsIn, n);
          assert.equal(st.a!.packetsOut, n);
          assert.equal(st.b!.packetsIn, n);
          assert.equal(st.b!.drops.relayLoop, n);
          assert.equal(st.b!.packetsOut, 0);
          assert.equal(st.c!.packetsIn, 2 * n);
          assert.equal(st.c!.packetsOut, n);
          assert.equal(st.c!.drops.relayLoop, n);
          assert.ok(st.d!.drops.relayLoop >= n, `flow d: relayLoop ${st.d!.drops.relayLoop}`);
          assert.ok(st.d!.packetsOut <= 2 * n, `flow d: ${st.d!.packetsOut} copies`);
        } finally {
          await plane.close();
        }
      });

      test('oversized and malformed datagrams are dropped and counted', async () => {
        const dst = await receiver();
        const src = await sender();
        const flow = await s.apply({
          type: 'redirect',
          listen: 'udp://127.0.0.1:0',
          to: dst.url,
          allow: '127.0.0.1',
          maxDatagramSize: 1316,
          payload: 'mpegts',
        });
        const ts = new SyntheticTsStream({ bitrateBps: 2_000_000 });
        const good = Buffer.from(ts.nextDatagram());
        const badSync = Buffer.from(good);
        badSync[188] = 0x00;
        const partial = good.subarray(0, 1000);
        const huge = Buffer.concat([good, good.subarray(0, 188)]);
        for (const d of [good, badSync, partial, huge, Buffer.alloc(0), good]) await src.send(d, flow.listen.port, '127.0.0.1');
        await dst.waitFor(2);
        await dst.settle();
        assert.equal(dst.received.length, 2);
        const st = flow.stats();
        assert.equal(st.packetsIn, 6);
        assert.equal(st.drops.tooLarge, 1);
        assert.equal(st.drops.malformed, 3);
        assert.equal(st.packetsOut, 2);
        await flow.remove();
      });

      test('several flows run at once with separate counters', async () => {
        const [a, b] = await Promise.all([receiver(), receiver()]);
        const src = await sender();
        const f1 = await s.apply({ name: 'one', type: 'redirect', listen: 'udp://127.0.0.1:0', to: a!.url, allow: '127.0.0.1' });
        const f2 = await s.apply({ name: 'two', type: 'replicate', listen: 'udp://127.0.0.1:0', to: [b!.url], allow: '127.0.0.1' });
        await sendSequence(src, f1.listen, 100);
        await sendSequence(src, f2.listen, 60);
        await a!.waitFor(100);
        await b!.waitFor(60);
        assert.deepEqual(
          s.stats().map((x) => [x.name, x.packetsIn, x.packetsOut]),
          [
            ['one', 100, 100],
            ['two', 60, 60],
          ],
        );
        assert.equal(s.flow('two'), f2);
        await f1.remove();
        await f2.remove();
        assert.deepEqual(s.flows(), []);
      });

      test('listen conflicts and bind failures are clear errors; remove releases the port', async () => {
        const dst = await receiver();
        const f = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
        const port = f.listen.port;
        await assert.rejects(s.apply({ type: 'redirect', listen: `udp://0.0.0.0:${port}`, to: dst.url, allow: 'any' }), ConflictError);
        // A port held by another socket (not a flow): the bind error names the call and errno.
        // (Its subscriber is not f's listen: f feeds dst, so that would be a relay loop, refused before bind.)
        await assert.rejects(
          s.apply({ type: 'redirect', listen: dst.url, to: 'udp://127.0.0.1:9', allow: 'any' }),
          (e: unknown) => e instanceof SyscallError && e.op === 'bind' && e.errno === 'EADDRINUSE',
        );
        await f.remove();
        await f.remove(); // idempotent
        assert.throws(() => f.stats(), ClosedError);
        await assert.rejects(f.update({ to: dst.url }), ClosedError);
        const again = await s.apply({ type: 'redirect', listen: `udp://127.0.0.1:${port}`, to: dst.url, allow: 'any' });
        assert.equal(again.listen.port, port);
        await again.remove();
      });

      defineMediaConformance({ sluice: () => s, receiver: () => receiver(), sender: () => sender() });

      test('close releases everything, cascades to flows and stream schedulers, and is idempotent; detail() names the tier', async () => {
        const t = await Sluice.open({ tier: target.tier, ...hook });
        const dst = await receiver();
        const f = await t.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
        assert.equal(f.detail().tier, target.tier);
        // One-shot sends go through the tier registry's send engine for this tier, and say so.
        const w = await t.write([{ to: dst.url, data: new Uint8Array(100) }]);
        assert.deepEqual({ engine: w.engine, tier: w.tier, sent: w.sent }, { engine: t.sendEngine, tier: target.tier, sent: 1 });
        assert.equal(t.sendEngine, target.tier === 'portable' ? 'portable' : 'batched');
        const port = f.listen.port;
        const events: string[] = [];
        f.on('sluiceclose', () => events.push('flow sluiceclose'));
        f.on('close', (stats) => events.push(`flow close ${stats?.name}`));
        t.on('close', (final) => events.push(`sluice close ${final.length}`));
        const sched = t.streams({ packetSize: 1316 });
        const stream = sched.add({ id: 's', to: dst.url, bitrate: 1e6, data: new Uint8Array(1_000_000) });
        const closing = t.close();
        assert.equal(t.close(), closing);
        const final = await closing;
        assert.equal(t.closed, true);
        assert.equal(f.closed, true);
        assert.equal(f.removed, true);
        assert.equal((await stream.done).status, 'closed');
        assert.deepEqual(events, ['flow sluiceclose', `flow close ${f.name}`, 'sluice close 1']);
        assert.equal(await f.remove(), final[0]);
        await assert.rejects(t.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' }), ClosedError);
        // The port is free again.
        const probe = dgram.createSocket('udp4');
        await new Promise<void>((resolve, reject) => {
          probe.once('error', reject);
          probe.bind(port, '127.0.0.1', () => resolve());
        });
        await new Promise<void>((r) => probe.close(() => r()));
      });
    },
  );
}
