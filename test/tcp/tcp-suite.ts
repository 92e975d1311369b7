/**
 * The tcp-redirect conformance suite (issue 22, part 2): each scenario runs
 * through a relay in one mode and returns what the client and the upstream
 * server observed. conformance.test.ts asserts the expected behaviour for
 * each mode and that the splice path observes exactly what the node:net
 * reference proxy does under the same policy.
 */
import type { Socket } from 'node:net';
import { collect, connectTo, ending, refusedAttempt, randomBytes, sha, sleep, startRelay, startUpstream, until, type Mode } from './tcp-harness.js';

/** Random sizes (seeded) with the edges: empty, one byte, around a pipe's 64 KiB, a few MB. */
export const SIZES = [0, 1, 65535, 65536, 65537, 3_000_000, 777, 1_234_567];

/** N connections at once; each client sends A_i and the upstream sends B_k both ways at the same time. */
export async function exchange(mode: Mode): Promise<{ pairs: { up: boolean; down: boolean; upLen: number; downLen: number }[]; stats: unknown }> {
  const n = SIZES.length;
  const fromUpstream = SIZES.map((s, k) => randomBytes(SIZES[(k + 3) % n]!, 1000 + k));
  const got: { k: number; data: Promise<Buffer> }[] = [];
  const upstream = await startUpstream((s) => {
    const k = got.length;
    got.push({ k, data: collect(s) });
    s.end(fromUpstream[k]!);
  });
  const relay = await startRelay(mode, upstream.port);
  const toUpstream = SIZES.map((size, i) => Buffer.concat([Buffer.from([i]), randomBytes(size, 7 + i)]));
  const clients = await Promise.all(toUpstream.map(() => connectTo(relay)));
  const received = clients.map((c, i) => {
    const r = collect(c);
    c.end(toUpstream[i]!);
    return r;
  });
  const down = await Promise.all(received);
  await until(() => got.length === n);
  const up = await Promise.all(got.map((g) => g.data));
  const pairs = SIZES.map((_, i) => {
    const k = up.findIndex((b) => b.length > 0 && b[0] === i);
    return {
      up: k >= 0 && sha(up[k]!) === sha(toUpstream[i]!),
      down: k >= 0 && sha(down[i]!) === sha(fromUpstream[k]!),
      upLen: k >= 0 ? up[k]!.length : -1,
      downLen: down[i]!.length,
    };
  });
  for (const c of clients) c.destroy();
  await until(() => relay.stats().active === 0);
  const s = relay.stats();
  await relay.close();
  await upstream.close();
  return { pairs, stats: { accepted: s.accepted, active: s.active, closed: s.closed, resets: s.resets } };
}

/**
 * Half-close both ways round: the client ends first, the upstream sees its
 * end with every byte, then replies and ends; and the upstream ends first
 * while the client keeps sending.
 */
export async function halfClose(mode: Mode): Promise<Record<string, unknown>> {
  const upstream = await startUpstream();
  const relay = await startRelay(mode, upstream.port);
  // Client ends first.
  const c = await connectTo(relay);
  const s = await upstream.next();
  const request = randomBytes(200_000, 11);
  const clientGot = collect(c);
  const serverGot = collect(s);
  c.end(request);
  const req = await serverGot;
  const serverSawEnd = s.readableEnded;
  s.end(randomBytes(300_000, 12));
  const reply = await clientGot;
  // Upstream ends first.
  const c2 = await connectTo(relay);
  const s2 = await upstream.next();
  const c2Got = collect(c2);
  const s2Got = collect(s2);
  s2.end(Buffer.from('bye'));
  const early = await c2Got;
  const later = randomBytes(500_000, 13);
  c2.end(later);
  const late = await s2Got;
  await until(() => relay.stats().active === 0);
  const stats = relay.stats();
  await relay.close();
  await upstream.close();
  return {
    requestExact: sha(req) === sha(request),
    serverSawEnd,
    replyExact: sha(reply) === sha(randomBytes(300_000, 12)),
    earlyReply: early.toString(),
    sentAfterPeerEnded: sha(late) === sha(later),
    closed: stats.closed,
    resets: stats.resets,
  };
}

/** Reset from either side reaches the other as a reset. */
export async function resets(mode: Mode): Promise<Record<string, unknown>> {
  const upstream = await startUpstream();
  const relay = await startRelay(mode, upstream.port);
  const out: Record<string, unknown> = {};
  for (const who of ['client', 'upstream'] as const) {
    const c = await connectTo(relay);
    const s = await upstream.next();
    const sGot = collect(s);
    c.write('hello');
    await until(() => s.bytesRead >= 5);
    const victim: Socket = who === 'client' ? s : c;
    const ended = ending(victim);
    (who === 'client' ? c : s).resetAndDestroy();
    out[`${who}Reset:peerSaw`] = await ended;
    await sGot;
  }
  await until(() => relay.stats().active === 0);
  out.resets = relay.stats().resets;
  out.active = relay.stats().active;
  await relay.close();
  await upstream.close();
  return out;
}

/**
 * A client that does not read: the upstream's writes stall (the relay does
 * not buffer without bound), then every byte arrives once the client reads.
 */
export async function slowReader(mode: Mode): Promise<Record<string, unknown>> {
  const total = 64 * 1024 * 1024;
  const upstream = await startUpstream();
  const relay = await startRelay(mode, upstream.port);
  const c = await connectTo(relay);
  c.pause();
  const s = await upstream.next();
  const payload = randomBytes(total, 21);
  // Write in chunks while the kernel takes them; stop when it stops taking them.
  let offset = 0;
  const chunk = 256 * 1024;
  const pump = () => {
    while (offset < total) {
      const more = s.write(payload.subarray(offset, offset + chunk));
      offset += chunk;
      if (!more) {
        s.once('drain', pump);
        return;
      }
    }
    s.end();
  };
  pump();
  // Stalled: the flushed count stops moving (bounded wait).
  const flushed = () => s.bytesWritten - s.writableLength;
  let last = -1;
  for (let i = 0; i < 200 && flushed() !== last; i++) {
    last = flushed();
    await sleep(150);
  }
  const stalledAt = flushed();
  const relayHeld = relay.stats().bytesToClient;
  const got = collect(c);
  c.resume();
  const all = await got;
  const out = {
    stalled: stalledAt < total,
    relayHeldBack: relayHeld < total,
    exact: sha(all) === sha(payload),
  };
  c.destroy();
  await until(() => relay.stats().active === 0);
  await relay.close();
  await upstream.close();
  return { ...out, stalledMiB: Math.round(stalledAt / 1048576) };
}

/** A source outside `allow` is reset at accept and never reaches the upstream. */
export async function allowList(mode: Mode): Promise<Record<string, unknown>> {
  const upstream = await startUpstream();
  const relay = await startRelay(mode, upstream.port, { allow: ['10.0.0.0/8', '192.0.2.1'] });
  const how = await refusedAttempt(relay);
  await sleep(100);
  const stats = relay.stats();
  await relay.close();
  await upstream.close();
  return {
    how: how === 'end' ? 'end' : 'reset-or-close',
    upstreamConnections: upstream.sockets.length,
    notAllowed: stats.refused.notAllowed,
    accepted: stats.accepted,
  };
}

/**
 * Idle clients that never send hold a slot each up to maxConnections; more
 * are reset and counted; a freed slot is used again; they never stall others.
 */
export async function idleAndLimit(mode: Mode): Promise<Record<string, unknown>> {
  const upstream = await startUpstream((s) => s.pipe(s));
  const relay = await startRelay(mode, upstream.port, { maxConnections: 4 });
  const idle: Socket[] = [];
  for (let i = 0; i < 3; i++) idle.push(await connectTo(relay));
  await until(() => upstream.sockets.length === 3);
  // A working client next to the idle ones.
  const worker = await connectTo(relay);
  const echoed = collect(worker);
  worker.end(randomBytes(100_000, 5));
  const echo = await echoed;
  await until(() => relay.stats().active === 3);
  // Fill the last slot, then 6 more are refused.
  idle.push(await connectTo(relay));
  await until(() => relay.stats().active === 4);
  const extraEnds = await Promise.all(Array.from({ length: 6 }, () => refusedAttempt(relay)));
  const overLimit = relay.stats().refused.overLimit;
  // Free one slot: the next client is relayed.
  idle.shift()!.destroy();
  await until(() => relay.stats().active === 3);
  const again = await connectTo(relay);
  const againGot = collect(again);
  again.end('x');
  const againEcho = (await againGot).toString();
  for (const s of idle) s.destroy();
  await until(() => relay.stats().active === 0);
  const stats = relay.stats();
  await relay.close();
  await upstream.close();
  return {
    echoExact: sha(echo) === sha(randomBytes(100_000, 5)),
    refusedEnds: extraEnds.every((e) => e !== 'end'),
    overLimit,
    againEcho,
    upstreamConnections: upstream.sockets.length,
    accepted: stats.accepted,
  };
}

/** `to` not listening: the client is reset and the attempt counted. */
export async function upstreamDown(mode: Mode): Promise<Record<string, unknown>> {
  const upstream = await startUpstream();
  const port = upstream.port;
  await upstream.close();
  const relay = await startRelay(mode, port);
  const c = await connectTo(relay);
  const how = await ending(c);
  await until(() => relay.stats().upstreamFailed === 1);
  const stats = relay.stats();
  await relay.close();
  return { how: how === 'end' ? 'end' : 'reset-or-close', upstreamFailed: stats.upstreamFailed, active: stats.active, accepted: stats.accepted };
}

/** IPv6 loopback, and 200 pairs open at once (bounded), each echoing its own bytes. */
export async function manyPairsV6(mode: Mode): Promise<Record<string, unknown>> {
  const { createServer, connect } = await import('node:net');
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '::1', r));
  const port = (server.address() as { port: number }).port;
  const { TcpRelay } = await import('../../src/index.js');
  const relay = await TcpRelay.start({ type: 'tcp-redirect', listen: 'tcp://[::1]:0', to: `tcp://[::1]:${port}`, allow: '::1', mode, maxConnections: 200 });
  const relayPort = Number(new URL(relay.listen).port);
  const n = 200;
  const results = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const c = connect({ host: '::1', port: relayPort, allowHalfOpen: true });
      c.on('error', () => {});
      const data = randomBytes(1000 + i * 97, 300 + i);
      const got = collect(c);
      c.end(data);
      return sha(await got) === sha(data);
    }),
  );
  await until(() => relay.stats().active === 0);
  const s = relay.stats();
  await relay.close();
  await new Promise<void>((r) => server.close(() => r()));
  return { allExact: results.every(Boolean), accepted: s.accepted, closed: s.closed, resets: s.resets, overLimit: s.refused.overLimit };
}

/** idleTimeoutMs: a pair that moves nothing is closed (FIN to both sides) and counted; a busy pair is not. */
export async function idleTimeout(mode: Mode): Promise<Record<string, unknown>> {
  const upstream = await startUpstream((s) => s.pipe(s));
  const relay = await startRelay(mode, upstream.port, { idleTimeoutMs: 1500 });
  const quiet = await connectTo(relay);
  const quietEnd = ending(quiet);
  const busy = await connectTo(relay);
  const busyGot = collect(busy);
  const sent: Buffer[] = [];
  for (let i = 0; i < 30; i++) {
    const b = randomBytes(100, 50 + i);
    sent.push(b);
    busy.write(b);
    await sleep(100);
  }
  const quietHow = await quietEnd;
  busy.end();
  const echoed = await busyGot;
  await until(() => relay.stats().active === 0);
  const s = relay.stats();
  await relay.close();
  await upstream.close();
  return { quietHow, busyExact: sha(echoed) === sha(Buffer.concat(sent)), idleClosed: s.idleClosed, closed: s.closed, resets: s.resets };
}

/**
 * The sockmap path's split: a request the client sends at once (before the
 * upstream connection exists), a large reply, then more request bytes.
 * Returns whether both sides got exactly what was sent, and where the
 * relay says the bytes went.
 */
export async function sockmapSplit(): Promise<{
  exact: boolean;
  kernelBytes: number;
  userBytes: number;
  fallbackPairs: number;
  earlyBytes: number;
  replyBytes: number;
  totalBytes: number;
}> {
  const early = randomBytes(10_000, 31);
  const late = randomBytes(1_000_000, 32);
  const reply = randomBytes(2_000_000, 33);
  const upstream = await startUpstream((s) => {
    let seen = 0;
    s.on('data', (d: Buffer) => {
      const before = seen;
      seen += d.length;
      if (before < early.length && seen >= early.length) s.write(reply);
    });
  });
  const relay = await startRelay('sockmap', upstream.port);
  const c = await connectTo(relay);
  c.write(early);
  const s = await upstream.next();
  const gotUp = collect(s);
  let down = 0;
  const gotDown: Buffer[] = [];
  await new Promise<void>((resolve) => {
    c.on('data', (d: Buffer) => {
      gotDown.push(d);
      down += d.length;
      if (down >= reply.length) resolve();
    });
  });
  c.end(late);
  const up = await gotUp;
  s.end();
  await ending(c);
  await until(() => relay.stats().active === 0);
  const st = relay.stats();
  await relay.close();
  await upstream.close();
  return {
    exact: sha(up) === sha(Buffer.concat([early, late])) && sha(Buffer.concat(gotDown)) === sha(reply),
    kernelBytes: st.sockmap?.kernelBytes ?? -1,
    userBytes: st.sockmap?.userBytes ?? -1,
    fallbackPairs: st.sockmap?.fallbackPairs ?? -1,
    earlyBytes: early.length,
    replyBytes: reply.length,
    totalBytes: early.length + late.length + reply.length,
  };
}

/**
 * The sockmap path re-armed under a sender that never pauses: the upstream
 * writes `total` bytes back to back; the client reads nothing for a while
 * (the reply direction's backlog passes its limit: throttled, so its bytes
 * go through Node), then reads everything. Returns whether every byte
 * arrived in order and where the relay says the bytes went.
 */
export async function sockmapRearm(): Promise<{ exact: boolean; received: number; total: number; kernelBytes: number; userBytes: number; throttles: number }> {
  const block = randomBytes(1 << 20, 41);
  const total = 256 * block.length;
  const upstream = await startUpstream((s) => {
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += block.length;
        if (!s.write(block)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  const relay = await startRelay('sockmap', upstream.port);
  const c = await connectTo(relay);
  c.pause();
  await sleep(700);
  let received = 0;
  let exact = true;
  await new Promise<void>((resolve) => {
    c.on('data', (d: Buffer) => {
      // Checked piece by piece against the repeating block: nothing is kept.
      for (let off = 0; off < d.length && exact;) {
        const at = received % block.length;
        const n = Math.min(d.length - off, block.length - at);
        exact = d.subarray(off, off + n).equals(block.subarray(at, at + n));
        off += n;
        received += n;
      }
    });
    c.once('end', resolve);
    c.once('close', resolve);
    c.resume();
  });
  c.destroy();
  await until(() => relay.stats().active === 0);
  const st = relay.stats();
  await relay.close();
  await upstream.close();
  return {
    exact: exact && received === total,
    received,
    total,
    kernelBytes: st.sockmap?.kernelBytes ?? -1,
    userBytes: st.sockmap?.userBytes ?? -1,
    throttles: st.sockmap?.throttles ?? -1,
  };
}
