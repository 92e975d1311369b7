/**
 * The rtnetlink qdisc-dump parser on hand-built buffers (well-formed,
 * multipart, and every kind of truncation or bad length: reported, never a
 * throw or an endless loop), and the SO_TXTIME verdict built from a dump.
 * Pure: no sockets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST } from '../../src/sys/netlink/message.js';
import {
  RTM_GETQDISC,
  RTM_NEWQDISC,
  TCA_KIND,
  TC_H_INGRESS,
  TC_H_ROOT,
  parseNetlinkDump,
  parseQdiscDump,
  qdiscDumpRequest,
  type QdiscInfo,
} from '../../src/sys/netlink/rtnetlink.js';
import { assessTxtime } from '../../src/sys/txtime.js';

const TCA_OPTIONS = 2;
const NLA_F_NESTED = 0x8000;

const pad4 = (b: Uint8Array): Uint8Array => {
  const out = new Uint8Array((b.length + 3) & ~3);
  out.set(b);
  return out;
};
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

function rtattr(type: number, value: Uint8Array, lenOverride?: number): Uint8Array {
  const b = new Uint8Array(4 + value.length);
  const v = new DataView(b.buffer);
  v.setUint16(0, lenOverride ?? b.length, true);
  v.setUint16(2, type, true);
  b.set(value, 4);
  return pad4(b);
}
const kindAttr = (kind: string): Uint8Array => rtattr(TCA_KIND, new TextEncoder().encode(`${kind}\0`));

function tcmsg(ifindex: number, handle: number, parent: number, ...attrs: Uint8Array[]): Uint8Array {
  const b = new Uint8Array(20);
  const v = new DataView(b.buffer);
  v.setInt32(4, ifindex, true);
  v.setUint32(8, handle, true);
  v.setUint32(12, parent, true);
  return concat(b, ...attrs);
}

function nlmsg(type: number, payload: Uint8Array, opts: { flags?: number; seq?: number; len?: number } = {}): Uint8Array {
  const b = new Uint8Array(16 + payload.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, opts.len ?? b.length, true);
  v.setUint16(4, type, true);
  v.setUint16(6, opts.flags ?? NLM_F_MULTI, true);
  v.setUint32(8, opts.seq ?? 7, true);
  b.set(payload, 16);
  return pad4(b);
}
const int32 = (n: number): Uint8Array => new Uint8Array(new Int32Array([n]).buffer);
const done = (status = 0): Uint8Array => nlmsg(NLMSG_DONE, int32(status));
const qdisc = (ifindex: number, handle: number, parent: number, kind: string, ...extra: Uint8Array[]) =>
  nlmsg(RTM_NEWQDISC, tcmsg(ifindex, handle, parent, kindAttr(kind), ...extra));

const LO: QdiscInfo = { ifindex: 1, handle: 0, parent: TC_H_ROOT, kind: 'noqueue' };
const ETH: QdiscInfo = { ifindex: 4, handle: 0, parent: TC_H_ROOT, kind: 'pfifo_fast' };
const twoQdiscs = (): Uint8Array => concat(qdisc(1, 0, TC_H_ROOT, 'noqueue'), qdisc(4, 0, TC_H_ROOT, 'pfifo_fast'));

test('two qdiscs and NLMSG_DONE in one buffer', () => {
  const r = parseNetlinkDump(concat(twoQdiscs(), done()), 7);
  assert.deepEqual(r, { qdiscs: [LO, ETH], done: true });
  assert.deepEqual(parseQdiscDump(concat(twoQdiscs(), done())), [LO, ETH]);
});

test('a multipart dump spread over reads; other attributes and flag bits skipped', () => {
  const opts = rtattr(TCA_OPTIONS | NLA_F_NESTED, new Uint8Array([1, 2, 3, 4, 5]));
  const first = concat(
    nlmsg(RTM_NEWQDISC, tcmsg(4, 0x80010000, TC_H_ROOT, opts, kindAttr('mq'))),
    nlmsg(NLMSG_NOOP, new Uint8Array(0)),
    qdisc(4, 0, 0x80010001, 'fq', opts),
  );
  const a = parseNetlinkDump(first, 7);
  assert.equal(a.done, false);
  assert.equal(a.malformed, undefined);
  assert.deepEqual(a.qdiscs, [
    { ifindex: 4, handle: 0x80010000, parent: TC_H_ROOT, kind: 'mq' },
    { ifindex: 4, handle: 0, parent: 0x80010001, kind: 'fq' },
  ]);
  const b = parseNetlinkDump(concat(qdisc(4, 0xffff0000, TC_H_INGRESS, 'ingress'), done(), qdisc(9, 0, TC_H_ROOT, 'after-done')), 7);
  assert.deepEqual(b, { qdiscs: [{ ifindex: 4, handle: 0xffff0000, parent: TC_H_INGRESS, kind: 'ingress' }], done: true });
});

test('messages of another sequence number are ignored', () => {
  const r = parseNetlinkDump(concat(nlmsg(RTM_NEWQDISC, tcmsg(3, 0, TC_H_ROOT, kindAttr('x')), { seq: 99 }), twoQdiscs(), done()), 7);
  assert.deepEqual(r.qdiscs, [LO, ETH]);
});

test('NLMSG_ERROR and a failed NLMSG_DONE give the errno; an ACK does not', () => {
  const err = nlmsg(NLMSG_ERROR, concat(int32(-1), new Uint8Array(16)));
  assert.deepEqual(parseNetlinkDump(concat(qdisc(1, 0, TC_H_ROOT, 'noqueue'), err)), { qdiscs: [LO], done: false, errno: 1 });
  const ack = nlmsg(NLMSG_ERROR, concat(int32(0), new Uint8Array(16)));
  assert.deepEqual(parseNetlinkDump(concat(ack, twoQdiscs(), done())), { qdiscs: [LO, ETH], done: true });
  assert.deepEqual(parseNetlinkDump(done(-16)), { qdiscs: [], done: true, errno: 16 });
  // A DONE without its status int (old kernels) still ends the dump.
  assert.deepEqual(parseNetlinkDump(nlmsg(NLMSG_DONE, new Uint8Array(0))), { qdiscs: [], done: true });
  assert.match(parseNetlinkDump(nlmsg(NLMSG_ERROR, new Uint8Array(0))).malformed ?? '', /no error code/);
});

test('truncated header: earlier qdiscs kept, the rest reported', () => {
  const buf = concat(twoQdiscs(), new Uint8Array(10));
  const r = parseNetlinkDump(buf);
  assert.deepEqual(r.qdiscs, [LO, ETH]);
  assert.equal(r.done, false);
  assert.match(r.malformed ?? '', /truncated nlmsghdr .*10 of 16/);
  assert.deepEqual(parseNetlinkDump(new Uint8Array(3)).qdiscs, []);
  assert.match(parseNetlinkDump(new Uint8Array(3)).malformed ?? '', /truncated/);
});

test('nlmsg_len beyond the buffer is reported, not read', () => {
  const good = qdisc(1, 0, TC_H_ROOT, 'noqueue');
  const bad = nlmsg(RTM_NEWQDISC, tcmsg(4, 0, TC_H_ROOT, kindAttr('pfifo_fast')), { len: 4096 });
  const r = parseNetlinkDump(concat(good, bad));
  assert.deepEqual(r.qdiscs, [LO]);
  assert.match(r.malformed ?? '', /nlmsg_len 4096 .* runs past/);
  // A message cut in the middle (a short read).
  const cut = concat(good, qdisc(4, 0, TC_H_ROOT, 'pfifo_fast')).subarray(0, good.length + 30);
  assert.match(parseNetlinkDump(cut).malformed ?? '', /runs past/);
});

test('nlmsg_len < 16 stops the parse (no endless loop on length 0)', () => {
  for (const len of [0, 1, 15]) {
    const r = parseNetlinkDump(concat(qdisc(1, 0, TC_H_ROOT, 'noqueue'), nlmsg(RTM_NEWQDISC, new Uint8Array(20), { len }), done()));
    assert.deepEqual(r.qdiscs, [LO]);
    assert.equal(r.done, false);
    assert.match(r.malformed ?? '', new RegExp(`nlmsg_len ${len} < 16`));
  }
});

test('short tcmsg and attribute length overruns are reported; the broken qdisc is dropped', () => {
  const shortTc = nlmsg(RTM_NEWQDISC, new Uint8Array(12));
  assert.match(parseNetlinkDump(shortTc).malformed ?? '', /shorter than nlmsghdr \+ tcmsg/);
  const overrun = nlmsg(RTM_NEWQDISC, tcmsg(4, 0, TC_H_ROOT, rtattr(TCA_KIND, new TextEncoder().encode('fq\0'), 200)));
  const r = parseNetlinkDump(concat(qdisc(1, 0, TC_H_ROOT, 'noqueue'), overrun, done()));
  assert.deepEqual(r.qdiscs, [LO]);
  assert.equal(r.done, false);
  assert.match(r.malformed ?? '', /rtattr of length 200/);
  const zeroLen = nlmsg(RTM_NEWQDISC, tcmsg(4, 0, TC_H_ROOT, rtattr(TCA_KIND, new Uint8Array(4), 0)));
  assert.match(parseNetlinkDump(zeroLen).malformed ?? '', /rtattr of length 0/);
  // A kind without its NUL, and a message without TCA_KIND, are fine.
  const noNul = nlmsg(RTM_NEWQDISC, tcmsg(2, 0, TC_H_ROOT, rtattr(TCA_KIND, new TextEncoder().encode('etf'))));
  const noKind = nlmsg(RTM_NEWQDISC, tcmsg(3, 0, TC_H_ROOT));
  assert.deepEqual(parseQdiscDump(concat(noNul, noKind)), [
    { ifindex: 2, handle: 0, parent: TC_H_ROOT, kind: 'etf' },
    { ifindex: 3, handle: 0, parent: TC_H_ROOT, kind: '' },
  ]);
});

test('random bytes and mutated dumps never throw (property)', () => {
  const check = (buf: Uint8Array, seq?: number): void => {
    const r = parseNetlinkDump(buf, seq);
    // Each qdisc needs at least nlmsghdr + tcmsg.
    assert.ok(r.qdiscs.length <= buf.length / 36);
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), fc.option(fc.nat()), (b, seq) => check(b, seq ?? undefined)),
    { numRuns: 2000 },
  );
  const valid = concat(twoQdiscs(), qdisc(4, 0xffff0000, TC_H_INGRESS, 'ingress'), done());
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.nat(255)), { minLength: 1, maxLength: 6 }), fc.nat(valid.length), (edits, cut) => {
      const b = valid.slice(0, cut);
      for (const [i, x] of edits) if (i < b.length) b[i] = x;
      check(b);
      // Unaligned views over a larger buffer too.
      const shifted = new Uint8Array(b.length + 1);
      shifted.set(b, 1);
      check(shifted.subarray(1));
    }),
    { numRuns: 3000 },
  );
});

test('the request: nlmsghdr + zeroed tcmsg, RTM_GETQDISC with NLM_F_REQUEST|NLM_F_DUMP', () => {
  const req = qdiscDumpRequest(0x01020304);
  const v = new DataView(req.buffer);
  assert.equal(req.length, 36);
  assert.equal(v.getUint32(0, true), 36);
  assert.equal(v.getUint16(4, true), RTM_GETQDISC);
  assert.equal(v.getUint16(6, true), NLM_F_REQUEST | NLM_F_DUMP);
  assert.equal(v.getUint32(8, true), 0x01020304);
  assert.ok(req.subarray(12).every((x) => x === 0));
});

test('SO_TXTIME verdict from a dump', () => {
  const ok = { accepted: true, reason: 'accepted' };
  const eth0 = { name: 'eth0', ifindex: 4 };
  const q = (ifindex: number, handle: number, parent: number, kind: string): QdiscInfo => ({ ifindex, handle, parent, kind });

  const fifo = assessTxtime([eth0], [q(1, 0, TC_H_ROOT, 'noqueue'), q(4, 0, TC_H_ROOT, 'pfifo_fast')], ok);
  assert.equal(fifo.usable, false);
  assert.equal(fifo.detail, "SO_TXTIME: not used — eth0's root qdisc is pfifo_fast (needs fq or etf); Sluice paces in its send worker");

  const fq = assessTxtime([eth0], [q(4, 0x80010000, TC_H_ROOT, 'fq'), q(4, 0xffff0000, TC_H_INGRESS, 'clsact')], ok);
  assert.equal(fq.usable, true);
  assert.match(fq.detail, /^SO_TXTIME: usable .*eth0: fq/);

  // Default mq (handle 0:) with per-queue children 0:1, 0:2; the ingress qdisc is not a child.
  const mqFq = [q(4, 0, TC_H_ROOT, 'mq'), q(4, 0, 1, 'fq'), q(4, 0, 2, 'etf'), q(4, 0xffff0000, TC_H_INGRESS, 'ingress')];
  const mq = assessTxtime([eth0], mqFq, ok);
  assert.equal(mq.usable, true);
  assert.deepEqual(mq.perInterface[0]?.children, ['fq', 'etf']);
  const mixed = assessTxtime([eth0], [...mqFq, q(4, 0, 3, 'pfifo_fast')], ok);
  assert.equal(mixed.usable, false);
  assert.match(mixed.detail, /eth0's root qdisc is mq with pfifo_fast children/);
  assert.match(assessTxtime([eth0], [q(4, 0x80010000, TC_H_ROOT, 'mqprio')], ok).detail, /mqprio with no child qdisc listed/);
  // Children of another interface or another major do not count.
  assert.equal(assessTxtime([eth0], [q(4, 0x80010000, TC_H_ROOT, 'mq'), q(5, 0, 0x80010001, 'fq'), q(4, 0, 1, 'fq')], ok).usable, false);

  const refused = assessTxtime([eth0], [q(4, 0, TC_H_ROOT, 'fq')], { accepted: false, reason: 'the kernel refused setsockopt(SO_TXTIME): ENOPROTOOPT' });
  assert.equal(refused.usable, false);
  assert.match(refused.detail, /refused setsockopt\(SO_TXTIME\): ENOPROTOOPT; Sluice paces/);
  assert.match(assessTxtime([], [], ok).detail, /no UP non-loopback interface/);
  assert.match(assessTxtime([eth0], [], ok).detail, /eth0's root qdisc is not listed/);
});
