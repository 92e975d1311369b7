/**
 * nf_tables encoding of transparent interception, pure (no root, no
 * sockets): rule messages byte for byte against what nft 1.0.6 sends for
 * the same rules (captured with `nft --debug=mnl` in a scratch namespace,
 * body after the 16-byte nlmsghdr, from:
 *
 *   table inet t {
 *     chain c { type nat hook prerouting priority -100; policy accept;
 *       meta mark 0x1234 accept
 *       fib daddr type local accept
 *       meta l4proto tcp ip daddr 10.16.0.0/12 tcp dport 8000-8099 redirect to :40000 }
 *     chain u { type filter hook prerouting priority -150; policy accept;
 *       meta l4proto udp udp sport 53 tproxy to :5353 meta mark set 0x20 accept } }
 *
 * ), plus the rule plan's shape (first match), the policy-routing
 * messages, and the refusals that need no kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileInterceptTable } from '../../src/tpo/config/intercept-rules.js';
import {
  NFPROTO_INET,
  NFT_CMP_EQ,
  NFT_META_MARK,
  NF_ACCEPT,
  RTN_LOCAL,
  cmp,
  fibDaddrType,
  immediateData,
  metaLoad,
  metaSet,
  newRule,
  redirPort,
  tproxyPort,
  verdict,
} from '../../src/sys/netlink/nftables.js';
import { be16, ne32, parseAcks } from '../../src/sys/netlink/message.js';
import { encodeDelete, encodeInstall, entryMatch, planRules, tableName } from '../../src/tpo/intercept/nftables.js';
import { RTM_NEWROUTE, RTM_NEWRULE, routeMessage, ruleMessage } from '../../src/sys/netlink/policy-routing.js';
import { startTransparentInterception } from '../../src/tpo/intercept/tproxy-interceptor.js';
import { tproxyRoutingFor } from '../../src/tpo/intercept/tproxy-state.js';
import { NotSupportedError } from '../../src/errors.js';

const NFT_1_0_6 = {
  ownMark:
    '01000000060001007400000006000200630000008400048024000180090001006d6574610000000014000280080002000000000308000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800800010034120000300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c0002800800010000000001',
  localDst:
    '0100000006000100740000000600020063000000880004802800018008000100666962001c0002800800030000000002080002000000000308000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800800010002000000300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c0002800800010000000001',
  tcpRedirect:
    '01000000060001007400000006000200630000002402048024000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c000380050001000600000024000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010002000000340001800c0001007061796c6f616400240002800800010000000001080002000000000108000300000000100800040000000004440001800c0001006269747769736500340002800800010000000001080002000000000108000300000000040c00048008000100fff000000c00058008000100000000002c00018008000100636d700020000280080001000000000108000200000000000c000380080001000a100000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d700020000280080001000000000108000200000000050c000380060001001f4000002c00018008000100636d700020000280080001000000000108000200000000030c000380060001001fa300002c0001800e000100696d6d6564696174650000001800028008000100000000010c000280060001009c400000240001800a00010072656469720000001400028008000100000000010800030000000002',
  udpTproxy:
    '01000000060001007400000006000200750000008401048024000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010011000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000008000400000000022c00018008000100636d700020000280080001000000000108000200000000000c00038006000100003500002c0001800e000100696d6d6564696174650000001800028008000100000000010c0002800600010014e90000240001800b0001007470726f7879000014000280080001000000000008000300000000012c0001800e000100696d6d6564696174650000001800028008000100000000010c000280080001002000000024000180090001006d657461000000001400028008000200000000030800030000000001300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c0002800800010000000001',
};

const body = (msg: Uint8Array): string => Buffer.from(msg.subarray(16)).toString('hex');
const rule = (chain: string, exprs: Parameters<typeof newRule>[5]): string => body(newRule(1, 0, NFPROTO_INET, 't', chain, exprs));

test('rule messages match nft byte for byte', () => {
  assert.equal(rule('c', [metaLoad(NFT_META_MARK), cmp(NFT_CMP_EQ, ne32(0x1234)), verdict(NF_ACCEPT)]), NFT_1_0_6.ownMark);
  assert.equal(rule('c', [fibDaddrType(), cmp(NFT_CMP_EQ, ne32(RTN_LOCAL)), verdict(NF_ACCEPT)]), NFT_1_0_6.localDst);
  const [tcp, udp] = compileInterceptTable([
    { protocol: 'tcp', dst: '10.16.0.0/12', dstPort: '8000-8099' },
    { protocol: 'udp', srcPort: 53 },
  ]);
  assert.equal(rule('c', [...entryMatch(tcp!), immediateData(be16(40000)), redirPort()]), NFT_1_0_6.tcpRedirect);
  assert.equal(
    rule('u', [...entryMatch(udp!), immediateData(be16(5353)), tproxyPort(), immediateData(ne32(0x20)), metaSet(NFT_META_MARK), verdict(NF_ACCEPT)]),
    NFT_1_0_6.udpTproxy,
  );
});

test('plan: per-protocol chains in table order, terminal verdict per entry, self-exclusion first', () => {
  const table = compileInterceptTable([
    { name: 'a', protocol: 'tcp', dstPort: 80 },
    { name: 'u1', protocol: 'udp', dst: '10.0.0.0/8' },
    { name: 'b', protocol: 'tcp', dst: '10.0.0.0/8' },
    { name: 'u2', protocol: 'udp' },
  ]);
  const ports = new Map([
    [0, 1000],
    [1, 1001],
    [2, 1002],
    [3, 1003],
  ]);
  const chains = planRules(table, { table: 'x', hooks: { prerouting: true, output: true }, ownMark: 7, tproxyMark: 8, ports });
  const shape = Object.fromEntries(chains.map((c) => [c.name, c.rules.map((r) => r.label)]));
  assert.deepEqual(shape, {
    pre_tcp: ['skip own mark', 'skip local destinations', 'entry a', 'entry b'],
    out_tcp: ['skip own mark', 'skip local destinations', 'entry a', 'entry b'],
    pre_udp: ['skip own mark', 'skip local destinations', 'entry u1', 'entry u1 (no listener: drop)', 'entry u2', 'entry u2 (no listener: drop)'],
    out_udp: ['skip own mark', 'skip local destinations', 'entry u1', 'entry u2'],
  });
  // Every entry rule ends in a verdict (redir sets one itself), so a later entry never sees a packet an earlier one matched.
  for (const c of chains) {
    for (const r of c.rules) assert.ok(['redir', 'immediate'].includes(r.exprs.at(-1)!.name), `${c.name}/${r.label} ends with ${r.exprs.at(-1)!.name}`);
  }
  // Only output: prerouting still tproxies, but only what out_udp marked.
  const outOnly = planRules(table, { table: 'x', hooks: { prerouting: false, output: true }, ownMark: 7, tproxyMark: 8, ports });
  assert.deepEqual(
    outOnly.map((c) => c.name),
    ['out_tcp', 'pre_udp', 'out_udp'],
  );
  const looped = outOnly.find((c) => c.name === 'pre_udp')!.rules[2]!.exprs;
  assert.equal(looped[0]!.name, 'meta');
  assert.equal(looped[1]!.name, 'cmp');
  assert.throws(() => planRules(table, { table: 'x', hooks: { prerouting: true, output: false }, ownMark: 8, tproxyMark: 8, ports }), /must differ/);
  assert.throws(
    () => planRules(table, { table: 'x', hooks: { prerouting: true, output: false }, ownMark: 7, tproxyMark: 8, ports: new Map() }),
    /no listener port/,
  );
});

test('install batch: begin, table (owner), chains, rules, end; each change acknowledged', () => {
  let seq = 100;
  const table = compileInterceptTable([{ protocol: 'tcp', dstPort: 80 }]);
  const chains = planRules(table, { table: 'sluice_tpo_a', hooks: { prerouting: true, output: false }, ownMark: 7, tproxyMark: 8, ports: new Map([[0, 999]]) });
  const b = encodeInstall('sluice_tpo_a', chains, () => seq++);
  const types: number[] = [];
  const v = new DataView(b.bytes.buffer);
  for (let off = 0; off < b.bytes.length; off += v.getUint32(off, true)) types.push(v.getUint16(off + 4, true));
  assert.deepEqual(types, [0x10, 0xa00, 0xa03, 0xa06, 0xa06, 0xa06, 0x11]);
  assert.deepEqual(
    b.pending.map((p) => p.what.split(' ')[0]),
    ['NFT_MSG_NEWTABLE', 'NFT_MSG_NEWCHAIN', 'NFT_MSG_NEWRULE', 'NFT_MSG_NEWRULE', 'NFT_MSG_NEWRULE'],
  );
  // NFTA_TABLE_FLAGS = NFT_TABLE_F_OWNER (be32 2), after the name "sluice_tpo_a\0" (13 bytes, padded to 16).
  const table0 = b.bytes.subarray(20, 20 + v.getUint32(20, true));
  assert.equal(Buffer.from(table0.subarray(20 + 20, 20 + 28)).toString('hex'), '0800020000000002');
  const del = encodeDelete('sluice_tpo_a', () => seq++);
  assert.equal(del.pending.length, 1);
  assert.equal(tableName('gw_1'), 'sluice_tpo_gw_1');
  assert.throws(() => tableName('Bad-Name'), /\[a-z0-9_\]/);
});

// Header fields and attribute values are those strace shows `ip rule add fwmark M lookup T priority P` and
// `ip -6 route add local ::/0 dev lo table T proto static` sending; we add FRA_FWMASK explicitly (ip leaves the
// kernel's default, all ones), omit RTA_DST for /0 and use scope host for IPv6 too (the kernel accepts both).
test('policy routing messages: fib_rule_hdr / rtmsg and attributes', () => {
  const r = { mark: 0x534c0001, table: 0x534c0001, priority: 100 };
  const rule = ruleMessage(RTM_NEWRULE, 5, 4, r);
  // family AF_INET, table 0 (too big for u8: FRA_TABLE), action FR_ACT_TO_TBL; then FRA_PRIORITY, FRA_FWMARK, FRA_FWMASK, FRA_TABLE.
  assert.equal(
    Buffer.from(rule.subarray(16)).toString('hex'),
    '020000000000000100000000' + '0800060064000000' + '08000a0001004c53' + '08001000ffffffff' + '08000f0001004c53',
  );
  const route = routeMessage(RTM_NEWROUTE, 6, 6, r);
  // AF_INET6, /0, proto static, scope host, type local; RTA_TABLE, RTA_OIF = lo (1).
  assert.equal(Buffer.from(route.subarray(16)).toString('hex'), '0a0000000004fe0200000000' + '08000f0001004c53' + '0800040001000000');
  assert.deepEqual(tproxyRoutingFor('a'), tproxyRoutingFor('a'));
  assert.notEqual(tproxyRoutingFor('a').table, tproxyRoutingFor('b').table);
});

test('ACK parser: acks, the first error, and malformed input never throw', () => {
  const msg = (seq: number, error: number): Uint8Array => {
    const b = new Uint8Array(36);
    const v = new DataView(b.buffer);
    v.setUint32(0, 36, true);
    v.setUint16(4, 2, true);
    v.setUint32(8, seq, true);
    v.setInt32(16, error, true);
    return b;
  };
  const both = new Uint8Array([...msg(1, 0), ...msg(2, -17)]);
  assert.deepEqual(parseAcks(both), { acked: [1], error: { seq: 2, errno: 17 } });
  for (let cut = 0; cut < both.length; cut++) assert.doesNotThrow(() => parseAcks(both.subarray(0, cut)));
});

test('ICMP entries are refused in transparent mode before anything is installed', async () => {
  const table = compileInterceptTable([{ name: 'ping', protocol: 'icmp', dst: '10.0.0.0/8' }]);
  await assert.rejects(startTransparentInterception({ table, instance: 'x', hooks: { prerouting: true, output: false }, mark: 1 }), (err: unknown) => {
    assert.ok(err instanceof NotSupportedError);
    assert.match(err.message, /ping.*not supported in transparent mode/s);
    return true;
  });
});
