/**
 * The nf_tables table-dump parser (harness/netns/nft-list.ts) on hand-built
 * buffers: tables of several families with their chain count and owner,
 * multipart replies, other sequence numbers, errors, and every kind of bad
 * length (reported, never a throw or an endless loop). Pure: no sockets.
 * The live dump is exercised by test/netns/tpo-intercept.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST } from '../../src/sys/netlink/message.js';
import {
  NFNL_SUBSYS_NFTABLES,
  NFPROTO_INET,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NFTA_TABLE_FLAGS,
  NFTA_TABLE_NAME,
  NFT_TABLE_F_OWNER,
} from '../../src/sys/netlink/nftables.js';
import { NFTA_TABLE_OWNER, NFTA_TABLE_USE, NFT_MSG_GETTABLE, formatNftTables, nftTableDumpRequest, parseNftTableDump } from '../../harness/netns/nft-list.js';

const NEWTABLE = NFNL_SUBSYS_NFTABLES << 8;
const NFTA_TABLE_HANDLE = 4;

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
function nla(type: number, value: Uint8Array, lenOverride?: number): Uint8Array {
  const b = new Uint8Array(4 + value.length);
  const v = new DataView(b.buffer);
  v.setUint16(0, lenOverride ?? b.length, true);
  v.setUint16(2, type, true);
  b.set(value, 4);
  return pad4(b);
}
const be32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, false);
  return b;
};
const str = (s: string): Uint8Array => new TextEncoder().encode(`${s}\0`);
function nlmsg(type: number, payload: Uint8Array, opts: { seq?: number; len?: number } = {}): Uint8Array {
  const b = new Uint8Array(16 + payload.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, opts.len ?? b.length, true);
  v.setUint16(4, type, true);
  v.setUint16(6, NLM_F_MULTI, true);
  v.setUint32(8, opts.seq ?? 7, true);
  b.set(payload, 16);
  return pad4(b);
}
const nfgen = (family: number): Uint8Array => Uint8Array.of(family, 0, 0, 0);
const int32 = (n: number): Uint8Array => new Uint8Array(new Int32Array([n]).buffer);
const done = (status = 0): Uint8Array => nlmsg(NLMSG_DONE, int32(status));
const table = (family: number, name: string, ...attrs: Uint8Array[]): Uint8Array =>
  nlmsg(NEWTABLE, concat(nfgen(family), nla(NFTA_TABLE_NAME, str(name)), ...attrs));

test('tables of several families with flags, chain count and owner; NLMSG_DONE ends the dump', () => {
  const buf = concat(
    table(
      NFPROTO_INET,
      'sluice_tpo_a',
      nla(NFTA_TABLE_FLAGS, be32(NFT_TABLE_F_OWNER)),
      nla(NFTA_TABLE_USE, be32(3)),
      nla(NFTA_TABLE_HANDLE, new Uint8Array(8)),
      nla(NFTA_TABLE_OWNER, be32(4242)),
    ),
    table(NFPROTO_IPV4, 'filter', nla(NFTA_TABLE_USE, be32(0))),
    table(NFPROTO_IPV6, 'nat'),
    done(),
    table(NFPROTO_INET, 'after-done'),
  );
  const r = parseNftTableDump(buf, 7);
  assert.deepEqual(r, {
    done: true,
    tables: [
      { family: 'inet', name: 'sluice_tpo_a', flags: NFT_TABLE_F_OWNER, chains: 3, owner: 4242 },
      { family: 'ip', name: 'filter', flags: 0, chains: 0 },
      { family: 'ip6', name: 'nat', flags: 0 },
    ],
  });
  assert.equal(formatNftTables(r.tables), 'table inet sluice_tpo_a (3 chains) owner 4242\ntable ip filter (0 chains)\ntable ip6 nat');
  assert.equal(formatNftTables([]), '');
});

test('multipart: a chunk without DONE is not done; other sequence numbers and message types are skipped', () => {
  const a = parseNftTableDump(concat(table(NFPROTO_INET, 'x', nla(NFTA_TABLE_USE, be32(1))), nlmsg(NEWTABLE + 3, nfgen(1))), 7);
  assert.deepEqual(a, { tables: [{ family: 'inet', name: 'x', flags: 0, chains: 1 }], done: false });
  const b = parseNftTableDump(concat(nlmsg(NEWTABLE, concat(nfgen(1), nla(NFTA_TABLE_NAME, str('stale'))), { seq: 99 }), table(250, 'odd'), done()), 7);
  assert.deepEqual(b, { tables: [{ family: 'family 250', name: 'odd', flags: 0 }], done: true });
});

test('NLMSG_ERROR and a failed DONE give the errno; an ACK does not', () => {
  const err = nlmsg(NLMSG_ERROR, concat(int32(-1), new Uint8Array(16)));
  assert.deepEqual(parseNftTableDump(err), { tables: [], done: false, errno: 1 });
  const ack = nlmsg(NLMSG_ERROR, concat(int32(0), new Uint8Array(16)));
  assert.deepEqual(parseNftTableDump(concat(ack, done())), { tables: [], done: true });
  assert.deepEqual(parseNftTableDump(done(-16)), { tables: [], done: true, errno: 16 });
  assert.match(parseNftTableDump(nlmsg(NLMSG_ERROR, new Uint8Array(0))).malformed ?? '', /no error code/);
});

test('bad lengths are reported, the tables before them kept', () => {
  const good = table(NFPROTO_INET, 'good');
  const G = { family: 'inet', name: 'good', flags: 0 };
  assert.deepEqual(parseNftTableDump(concat(good, new Uint8Array(10))), {
    tables: [G],
    done: false,
    malformed: 'truncated nlmsghdr at byte 32: 10 of 16 bytes',
  });
  for (const len of [0, 15])
    assert.match(parseNftTableDump(concat(good, nlmsg(NEWTABLE, nfgen(1), { len }))).malformed ?? '', new RegExp(`nlmsg_len ${len} < 16`));
  assert.match(parseNftTableDump(concat(good, nlmsg(NEWTABLE, nfgen(1), { len: 4096 }))).malformed ?? '', /runs past/);
  assert.match(parseNftTableDump(nlmsg(NEWTABLE, new Uint8Array(2))).malformed ?? '', /shorter than nlmsghdr \+ nfgenmsg/);
  const overrun = nlmsg(NEWTABLE, concat(nfgen(1), nla(NFTA_TABLE_NAME, str('x'), 200)));
  const r = parseNftTableDump(concat(good, overrun, done()));
  assert.deepEqual(r.tables, [G]);
  assert.match(r.malformed ?? '', /attribute of length 200/);
  assert.match(parseNftTableDump(nlmsg(NEWTABLE, concat(nfgen(1), nla(NFTA_TABLE_NAME, new Uint8Array(0), 0)))).malformed ?? '', /attribute of length 0/);
  // Short integer attributes are ignored rather than read past.
  assert.deepEqual(parseNftTableDump(table(1, 'short', nla(NFTA_TABLE_USE, Uint8Array.of(1, 2)))).tables, [{ family: 'inet', name: 'short', flags: 0 }]);
});

test('random and mutated bytes never throw (property)', () => {
  const check = (b: Uint8Array, seq?: number): void => {
    const r = parseNftTableDump(b, seq);
    assert.ok(r.tables.length <= b.length / 20);
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), fc.option(fc.nat()), (b, seq) => check(b, seq ?? undefined)),
    { numRuns: 2000 },
  );
  const valid = concat(table(1, 'a', nla(NFTA_TABLE_USE, be32(2))), table(2, 'b'), done());
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.nat(255)), { minLength: 1, maxLength: 6 }), fc.nat(valid.length), (edits, cut) => {
      const b = valid.slice(0, cut);
      for (const [i, x] of edits) if (i < b.length) b[i] = x;
      check(b);
      const shifted = new Uint8Array(b.length + 1);
      shifted.set(b, 1);
      check(shifted.subarray(1));
    }),
    { numRuns: 2000 },
  );
});

test('the request: NFT_MSG_GETTABLE, request|dump, nfgenmsg of every family', () => {
  const req = nftTableDumpRequest(0x01020304);
  const v = new DataView(req.buffer, req.byteOffset);
  assert.equal(req.byteLength, 20);
  assert.equal(v.getUint32(0, true), 20);
  assert.equal(v.getUint16(4, true), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE);
  assert.equal(v.getUint16(6, true), NLM_F_REQUEST | NLM_F_DUMP);
  assert.equal(v.getUint32(8, true), 0x01020304);
  assert.deepEqual([...req.subarray(16)], [0, 0, 0, 0]);
});
