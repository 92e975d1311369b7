/**
 * Property tests (issue 16) for the decoders of bytes that come from the
 * kernel or from disk: netlink replies (ACK/error reader, qdisc dump) and
 * the attribute encoder, sockaddr, the zerocopy error-queue reader, the
 * eBPF object reader (a hostile ELF) and the kernel tier's flow values.
 *
 * Same properties as the wire decoders: arbitrary and hostile input gives
 * a result or the module's typed error (the netlink and zerocopy readers
 * never throw at all), a view of a larger buffer decodes as a copy does,
 * and encoders round-trip.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { NLMSG_DONE, NLMSG_ERROR, SIZEOF_NLMSGHDR, parseAcks, readNlmsg, nlmsg, attr, nest, type NlAttr } from '../../src/sys/netlink/message.js';
import { RTM_NEWQDISC, parseNetlinkDump } from '../../src/sys/netlink/rtnetlink.js';
import { readSockaddr, writeSockaddr } from '../../src/sys/sockaddr.js';
import { parseZeroCopyNotifications } from '../../src/sys/zerocopy.js';
import { IP_RECVERR, IPV6_RECVERR, SOL_IP, SOL_IPV6, SO_EE_ORIGIN_ZEROCOPY, SO_EE_CODE_ZEROCOPY_COPIED } from '../../src/sys/constants.js';
import { parseBpfElf, ElfError } from '../../src/wire/elf.js';
import { objectPath } from '../../src/dataplane/kernel/program.js';
import { decodeFlowValue, flowValue, FLOW_VALUE_SIZE, MAX_SUBS } from '../../src/dataplane/kernel/layout.js';
import { formatIpv6 } from '../../src/wire/ip-address.js';
import { anyInput, hostile, mutate, mutation, sameInAnySurroundings, typedOnly } from './decoder-props.js';

const never = () => false;
const LE = true;

// ---------------------------------------------------------------------------
// Netlink

const u32le = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, LE);
  return b;
};
const i32le = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n, LE);
  return b;
};
/** An NLMSG_ERROR reply (error 0 = ACK) echoing a 16-byte request header. */
const ackMsg = (seq: number, error: number) => nlmsg(NLMSG_ERROR, 0, seq, Uint8Array.from([...i32le(error), ...new Uint8Array(16)]));
const replies = fc.array(fc.tuple(fc.nat(0xffffffff), fc.oneof(fc.constant(0), fc.integer({ min: -4095, max: -1 }))), { minLength: 1, maxLength: 8 });
const ackBuffer = replies.map((rs) => Uint8Array.from(rs.flatMap(([seq, e]) => [...ackMsg(seq, e)])));

test('netlink ACK reader: never throws, reads nothing beyond its input, round-trips ACKs and errors (property)', () => {
  fc.assert(
    fc.property(anyInput(ackBuffer, 300), (bytes) => {
      const o = sameInAnySurroundings(parseAcks, bytes, never, 'parseAcks');
      assert.ok(o.ok);
    }),
    { numRuns: 1500 },
  );
  fc.assert(
    fc.property(replies, (rs) => {
      const r = parseAcks(Uint8Array.from(rs.flatMap(([seq, e]) => [...ackMsg(seq, e)])));
      assert.equal(r.malformed, undefined);
      const firstError = rs.find(([, e]) => e !== 0);
      assert.deepEqual(
        r.acked,
        rs.filter(([, e]) => e === 0).map(([s]) => s),
      );
      assert.deepEqual(r.error, firstError ? { seq: firstError[0], errno: -firstError[1] } : undefined);
    }),
    { numRuns: 300 },
  );
});

test('netlink ACK reader: a lying nlmsg_len is reported as malformed, never read past (property)', () => {
  fc.assert(
    fc.property(replies, fc.nat(0xffffffff), (rs, len) => {
      const buf = Uint8Array.from(rs.flatMap(([seq, e]) => [...ackMsg(seq, e)]));
      const real = new DataView(buf.buffer).getUint32(0, LE);
      if (len === real || (len >= SIZEOF_NLMSGHDR + 4 && len <= buf.length && ((len + 3) & ~3) === ((real + 3) & ~3))) return;
      new DataView(buf.buffer).setUint32(0, len, LE);
      const r = sameInAnySurroundings(parseAcks, buf, never, 'parseAcks');
      assert.ok(r.ok);
      if (len < SIZEOF_NLMSGHDR || len > buf.length)
        assert.ok((r.value as ReturnType<typeof parseAcks>).malformed, `nlmsg_len ${len} of a ${buf.length}-byte buffer not reported`);
    }),
    { numRuns: 500 },
  );
});

test('netlink message walk: every step moves at least one header on and stays inside the buffer, or names the bad length (property)', () => {
  fc.assert(
    fc.property(anyInput(ackBuffer, 300), (bytes) => {
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let off = 0; off < bytes.byteLength;) {
        const m = readNlmsg(v, off);
        if (typeof m === 'string') {
          assert.match(m, /truncated nlmsghdr|nlmsg_len \d+ (< 16|at byte \d+ runs past)/);
          return;
        }
        assert.ok(m.len >= SIZEOF_NLMSGHDR && m.end <= bytes.byteLength, `message at ${off} of ${m.len} bytes`);
        assert.ok(m.next >= off + SIZEOF_NLMSGHDR && m.next <= bytes.byteLength, `next ${m.next} after ${off}`);
        off = m.next;
      }
    }),
    { numRuns: 1500 },
  );
});

/** Walks attributes as the kernel does (test-side decoder), so the encoder is checked against an independent reader. */
function walkAttrs(b: Uint8Array, v: DataView, from: number, to: number): NlAttr[] {
  const out: NlAttr[] = [];
  let at = from;
  while (at < to) {
    assert.ok(at + 4 <= to, 'attribute header runs past its container');
    const len = v.getUint16(at, LE);
    const type = v.getUint16(at + 2, LE);
    assert.ok(len >= 4 && at + len <= to, `attribute length ${len} does not fit`);
    if (type & 0x8000) out.push({ type: type & 0x3fff, nested: walkAttrs(b, v, at + 4, at + len) });
    else out.push({ type, value: b.slice(at + 4, at + len) });
    at += (len + 3) & ~3;
  }
  assert.equal(at, to, 'attributes do not end where their container ends');
  return out;
}

const nlAttr: fc.Arbitrary<NlAttr> = fc.letrec<{ a: NlAttr }>((tie) => ({
  a: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ type: fc.nat(0x3fff), value: fc.uint8Array({ maxLength: 24 }) }),
    fc.record({ type: fc.nat(0x3fff), nested: fc.array(tie('a'), { maxLength: 3 }) }),
  ),
})).a;

test('netlink attribute encoder: an independent reader gets back exactly the attributes written (property)', () => {
  fc.assert(
    fc.property(
      fc.nat(0xffff),
      fc.nat(0xffff),
      fc.nat(0xffffffff),
      fc.uint8Array({ maxLength: 12 }).map((b) => b.subarray(0, b.length & ~3)),
      fc.array(nlAttr, { maxLength: 5 }),
      (type, flags, seq, fixed, attrs) => {
        const m = nlmsg(type, flags, seq, fixed, attrs);
        const v = new DataView(m.buffer);
        assert.equal(v.getUint32(0, LE), m.length);
        assert.equal(v.getUint16(4, LE), type);
        assert.equal(v.getUint16(6, LE), flags);
        assert.equal(v.getUint32(8, LE), seq);
        assert.deepEqual([...m.subarray(16, 16 + fixed.length)], [...fixed]);
        const norm = (a: NlAttr): unknown => ('value' in a ? { type: a.type, value: [...a.value] } : { type: a.type, nested: a.nested.map(norm) });
        assert.deepEqual(walkAttrs(m, v, 16 + fixed.length, m.length).map(norm), attrs.map(norm));
      },
    ),
    { numRuns: 300 },
  );
  // What nla_len cannot hold is refused, not wrapped.
  assert.throws(() => nlmsg(1, 0, 0, new Uint8Array(0), [attr(1, new Uint8Array(0x10000))]), RangeError);
  assert.throws(() => nlmsg(1, 0, 0, new Uint8Array(0), [nest(1, attr(2, new Uint8Array(0x8000)), attr(3, new Uint8Array(0x8000)))]), RangeError);
});

const qdiscMsg = fc
  .record({
    ifindex: fc.integer({ min: -5, max: 1000 }),
    handle: fc.nat(0xffffffff),
    parent: fc.nat(0xffffffff),
    kind: fc.string({ maxLength: 12 }).filter((s) => !s.includes('\0')),
    seq: fc.constantFrom(7, 8),
  })
  .map((q) => {
    const tc = new Uint8Array(20);
    const v = new DataView(tc.buffer);
    v.setInt32(4, q.ifindex, LE);
    v.setUint32(8, q.handle, LE);
    v.setUint32(12, q.parent, LE);
    const kind = new TextEncoder().encode(`${q.kind}\0`);
    return nlmsg(RTM_NEWQDISC, 2, q.seq, tc, [attr(1, kind)]);
  });
const dump = fc
  .tuple(fc.array(qdiscMsg, { maxLength: 5 }), fc.boolean())
  .map(([ms, done]) => Uint8Array.from([...ms.flatMap((m) => [...m]), ...(done ? nlmsg(NLMSG_DONE, 2, 7, u32le(0)) : [])]));

test('netlink dump reader: never throws, reads nothing beyond its input, whatever the lengths say (property)', () => {
  fc.assert(
    fc.property(anyInput(dump, 400), fc.option(fc.constantFrom(7, 8), { nil: undefined }), (bytes, seq) => {
      const o = sameInAnySurroundings((b) => parseNetlinkDump(b, seq), bytes, never, 'parseNetlinkDump');
      assert.ok(o.ok);
    }),
    { numRuns: 1500 },
  );
});

// ---------------------------------------------------------------------------
// sockaddr

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map(formatIpv6);
const sockaddr = fc.oneof(
  fc.tuple(ipv4, fc.nat(65535)).map(([a, p]) => {
    const b = new Uint8Array(16);
    writeSockaddr(b, 0, 4, a, p);
    return b;
  }),
  fc.tuple(fc.oneof(ipv6, ipv4), fc.nat(65535)).map(([a, p]) => {
    const b = new Uint8Array(28);
    writeSockaddr(b, 0, 6, a, p);
    return b;
  }),
);

test('sockaddr: write → read round-trips, at any offset (property)', () => {
  fc.assert(
    fc.property(fc.oneof(ipv4, ipv6), fc.nat(65535), fc.nat(32), fc.boolean(), (address, port, offset, as6) => {
      const family = as6 || address.includes(':') ? 6 : 4;
      const b = new Uint8Array(offset + 28 + 8).fill(0xee);
      const len = writeSockaddr(b, offset, family, address, port);
      assert.equal(len, family === 4 ? 16 : 28);
      const back = readSockaddr(b, offset);
      assert.equal(back.port, port);
      assert.equal(back.family, family);
      assert.equal(back.address, family === 6 && !address.includes(':') ? `::ffff:${address}` : address);
    }),
    { numRuns: 500 },
  );
});

test('sockaddr: any bytes give an endpoint or a TypeError, and nothing beyond the input is read (property)', () => {
  fc.assert(
    fc.property(anyInput(sockaddr, 40), (bytes) => {
      sameInAnySurroundings(
        (b) => readSockaddr(b, 0),
        bytes,
        (e) => e instanceof TypeError,
        'readSockaddr',
      );
    }),
    { numRuns: 1000 },
  );
});

// ---------------------------------------------------------------------------
// Zerocopy completions (the socket error queue)

const cmsg = (level: number, type: number, body: Uint8Array) => {
  const len = 16 + body.length;
  const out = new Uint8Array((len + 7) & ~7);
  const v = new DataView(out.buffer);
  v.setUint32(0, len, LE);
  v.setInt32(8, level, LE);
  v.setInt32(12, type, LE);
  out.set(body, 16);
  return out;
};
const extendedErr = (origin: number, code: number, first: number, last: number) => {
  const b = new Uint8Array(16 + 16);
  const v = new DataView(b.buffer);
  b[4] = origin;
  b[6] = code;
  v.setUint32(8, first >>> 0, LE);
  v.setUint32(12, last >>> 0, LE);
  return b;
};
const completion = fc.record({ v6: fc.boolean(), first: fc.nat(0xffffffff), n: fc.nat(1000), copied: fc.boolean() });
const control = fc.array(completion, { maxLength: 4 }).map((cs) => ({
  cs,
  bytes: Uint8Array.from(
    cs.flatMap((c) => [
      ...cmsg(
        c.v6 ? SOL_IPV6 : SOL_IP,
        c.v6 ? IPV6_RECVERR : IP_RECVERR,
        extendedErr(SO_EE_ORIGIN_ZEROCOPY, c.copied ? SO_EE_CODE_ZEROCOPY_COPIED : 0, c.first, (c.first + c.n) >>> 0),
      ),
    ]),
  ),
}));

test('zerocopy completions: round-trip; any bytes and any length never throw and read nothing beyond (property)', () => {
  fc.assert(
    fc.property(control, ({ cs, bytes }) => {
      const r = parseZeroCopyNotifications(bytes);
      assert.equal(r.malformed, 0);
      assert.deepEqual(
        r.ranges,
        cs.map((c) => ({ first: c.first, last: (c.first + c.n) >>> 0, count: c.n + 1, copied: c.copied })),
      );
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(
      anyInput(
        control.map((c) => c.bytes),
        300,
      ),
      fc.integer({ min: -10, max: 400 }),
      (bytes, len) => {
        const o = sameInAnySurroundings((b) => parseZeroCopyNotifications(b, len), bytes, never, 'parseZeroCopyNotifications');
        assert.ok(o.ok);
      },
    ),
    { numRuns: 1000 },
  );
});

// ---------------------------------------------------------------------------
// The eBPF object (ELF): a hostile or damaged file is refused with an ElfError

const object = Uint8Array.from(readFileSync(objectPath()));
const isElf = (e: unknown) => e instanceof ElfError;

/** Offsets of every field the reader trusts: ELF header, section headers, symbols, relocations. */
function trustedFieldOffsets(b: Uint8Array): { at: number; size: 2 | 4 | 8 }[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: { at: number; size: 2 | 4 | 8 }[] = [40, 58, 60, 62].map((at) => ({ at, size: at === 40 ? 8 : 2 }) as const);
  const shoff = Number(v.getBigUint64(40, true));
  const shnum = v.getUint16(60, true);
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * 64;
    out.push(
      { at: o, size: 4 },
      { at: o + 4, size: 4 },
      { at: o + 8, size: 8 },
      { at: o + 24, size: 8 },
      { at: o + 32, size: 8 },
      { at: o + 40, size: 4 },
      { at: o + 44, size: 4 },
    );
    const type = v.getUint32(o + 4, true);
    const off = Number(v.getBigUint64(o + 24, true));
    const size = Number(v.getBigUint64(o + 32, true));
    // A few symbols and relocations of each symbol table and relocation section.
    if (type === 2)
      for (let s = off; s + 24 <= off + size && s < off + 24 * 8; s += 24) out.push({ at: s, size: 4 }, { at: s + 6, size: 2 }, { at: s + 8, size: 8 });
    if (type === 9) for (let r = off; r + 16 <= off + size && r < off + 16 * 8; r += 16) out.push({ at: r, size: 8 }, { at: r + 8, size: 8 });
  }
  return out;
}
const fields = trustedFieldOffsets(object);
const hostileValue = fc.oneof(
  fc.constantFrom(
    0n,
    1n,
    7n,
    8n,
    16n,
    24n,
    47n,
    63n,
    64n,
    0xffffn,
    0xffffffffn,
    0x7fffffffffffffffn,
    0xffffffffffffffffn,
    BigInt(object.length),
    BigInt(object.length - 1),
    BigInt(object.length - 8),
  ),
  fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }),
);
/** A damaged object that prints as its edits (not as 22 KB of bytes) when a property fails. */
function damaged(edits: string, bytes: Uint8Array): { edits: string; bytes: Uint8Array } {
  return Object.assign({ edits, bytes }, { [fc.toStringMethod]: () => `ELF edit: ${edits}` });
}
const fieldChange = fc.tuple(fc.constantFrom(...fields), hostileValue);
const hostileElf = fc.oneof(
  // One to three trusted fields set to hostile values (lying offsets, sizes, counts, indexes).
  fc.array(fieldChange, { minLength: 1, maxLength: 3 }).map((changes) => {
    const b = Uint8Array.from(object);
    const v = new DataView(b.buffer);
    for (const [f, value] of changes) {
      if (f.size === 2) v.setUint16(f.at, Number(value & 0xffffn), true);
      else if (f.size === 4) v.setUint32(f.at, Number(value & 0xffffffffn), true);
      else v.setBigUint64(f.at, value, true);
    }
    return damaged(changes.map(([f, value]) => `u${f.size * 8}@${f.at}=${value}`).join(', '), b);
  }),
  fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) =>
    damaged(
      JSON.stringify(ms, (_, x) => (x instanceof Uint8Array ? `${x.length} bytes` : x)),
      ms.reduce(mutate, object),
    ),
  ),
  // The section header table moved to the end of the file, with entries too short for a section header.
  fc.record({ k: fc.integer({ min: 1, max: 200 }), entsize: fc.nat(63), num: fc.integer({ min: 1, max: 64 }) }).map(({ k, entsize, num }) => {
    const b = Uint8Array.from(object);
    const v = new DataView(b.buffer);
    v.setBigUint64(40, BigInt(Math.max(0, b.length - k)), true);
    v.setUint16(58, entsize, true);
    v.setUint16(60, num, true);
    return damaged(`e_shoff=${b.length - k} (file ${b.length}), e_shentsize=${entsize}, e_shnum=${num}`, b);
  }),
  // A section (maps, license, symbols...) turned into NOBITS, whose offset and size nobody checks, pointing anywhere.
  fc.tuple(fc.nat(new DataView(object.buffer).getUint16(60, true) - 1), hostileValue, hostileValue).map(([i, off, size]) => {
    const b = Uint8Array.from(object);
    const v = new DataView(b.buffer);
    const h = Number(v.getBigUint64(40, true)) + i * 64;
    v.setUint32(h + 4, 8, true);
    v.setBigUint64(h + 24, off, true);
    v.setBigUint64(h + 32, size % 4096n, true);
    return damaged(`section ${i} made NOBITS at offset ${off}, size ${size % 4096n}`, b);
  }),
);

test('eBPF object: any damaged or hostile ELF is refused with an ElfError, never another exception; the real one reads the same from a view (property)', () => {
  assert.ok(sameInAnySurroundings(parseBpfElf, object, isElf, 'parseBpfElf').ok);
  fc.assert(
    fc.property(hostileElf, ({ bytes }) => {
      const o = typedOnly(() => parseBpfElf(bytes), isElf, 'parseBpfElf');
      if (!o.ok) return;
      // Whatever it accepted is inside the file: every program's code and relocations.
      const obj = o.value as ReturnType<typeof parseBpfElf>;
      for (const p of obj.programs) for (const r of p.mapRelocations) assert.ok(r.insn * 8 + 16 <= p.insns.length && obj.maps.some((m) => m.name === r.map));
    }),
    { numRuns: 400 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => void typedOnly(() => parseBpfElf(bytes), isElf, 'parseBpfElf')),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------
// Kernel flow values (read back from pinned maps when a restarted process adopts them)

test('kernel flow values: encode → decode round-trips; any map value of the right size decodes without throwing (property)', () => {
  const sub = fc.record({ port: fc.integer({ min: 1, max: 65535 }), destSlot: fc.nat(16383), a: fc.nat(255) });
  fc.assert(
    fc.property(
      fc.nat(1023),
      fc.nat(0xffffffff),
      fc.uniqueArray(fc.nat(MAX_SUBS - 1), { maxLength: 20 }),
      fc.array(sub, { minLength: 20, maxLength: 20 }),
      (slot, generation, positions, subs) => {
        const input = {
          slot,
          generation,
          listen: { family: 4 as const, address: '10.0.0.1', port: 5000 },
          sources: { any: true as const },
          maxDatagramSize: 1316,
          payload: 'any' as const,
          spillPort: 0,
          subs: positions.map((pos, i) => ({
            pos,
            local: false,
            destSlot: subs[i]!.destSlot,
            endpoint: { family: 4 as const, address: `10.1.0.${subs[i]!.a}`, port: subs[i]!.port },
          })),
        };
        const d = decodeFlowValue(flowValue(input));
        assert.equal(d.slot, slot);
        assert.equal(d.generation, generation);
        assert.deepEqual(
          d.subs.map((s) => [s.pos, s.port, s.destSlot]).sort((x, y) => x[0]! - y[0]!),
          input.subs.map((s) => [s.pos, s.endpoint.port, s.destSlot]).sort((x, y) => x[0]! - y[0]!),
        );
      },
    ),
    { numRuns: 100 },
  );
  fc.assert(
    fc.property(
      hostile(fc.constant(new Uint8Array(FLOW_VALUE_SIZE)))
        .map((h) => h.bytes)
        .filter((b) => b.length === FLOW_VALUE_SIZE),
      fc.nat(0xffff),
      (bytes, nsubs) => {
        new DataView(bytes.buffer).setUint16(12, nsubs, true);
        const o = sameInAnySurroundings(decodeFlowValue, bytes, never, 'decodeFlowValue');
        assert.ok(o.ok);
        assert.ok((o.value as ReturnType<typeof decodeFlowValue>).subs.every((s) => s.pos < MAX_SUBS));
      },
    ),
    { numRuns: 100 },
  );
});
