/**
 * The TPO gateway's config, flow table and route table (issue #7): pure
 * parsing and lookups, errors that name the field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBitRate, parseTpoConfig, parseTpoConfigText, TpoConfigError } from '../../src/tpo/config/config.js';
import { InterceptTable, FlowTableError, compileInterceptTable } from '../../src/tpo/config/intercept-rules.js';
import { RouteTable } from '../../src/tpo/gateway/routes.js';

const KEY = 'ab'.repeat(32);
const base = { name: 'a', listen: '127.0.0.1:7400', peers: [{ name: 'b', address: '192.0.2.2:7400', key: KEY, keyId: 1 }] };

const issues = (v: unknown): string[] => {
  try {
    parseTpoConfig(v, 't', () => Buffer.from('cd'.repeat(32)));
  } catch (err) {
    assert.ok(err instanceof TpoConfigError, String(err));
    return [...err.issues];
  }
  assert.fail('expected the config to be refused');
};

test('a valid config: peers, explicit table, routes, deliver.allow, defaults', () => {
  const c = parseTpoConfigText(
    `name: site-a
listen: 0.0.0.0:7400
peers:
  - { name: b, address: "192.0.2.2:7400", key: ${KEY}, keyId: 1, maxRate: 50M }
  - { name: c, keyFile: /k, keyId: 2 }
table:
  - { name: web, protocol: tcp, listen: "127.0.0.1:8080", target: "10.2.0.10:80", src: 127.0.0.0/8 }
  - { protocol: udp, listen: "127.0.0.1:5353", target: "10.3.0.1:53", peers: [b, c] }
routes:
  - { dst: 10.2.0.0/16, peer: b }
  - { dst: 10.3.0.0/16, peer: c }
deliver: { allow: [10.9.0.0/16] }
`,
    'site-a.yaml',
    () => Buffer.from('cd'.repeat(32)),
  );
  assert.equal(c.peers.length, 2);
  assert.equal(c.peers[0]!.maxRateBps, 50e6 / 8);
  assert.equal(c.peers[1]!.key.length, 32, 'a hex key file is decoded');
  assert.equal(c.peers[1]!.address, undefined, 'no address: this side answers');
  assert.equal(c.table[0]!.target?.port, 80);
  assert.deepEqual(c.table[1]!.peers, ['b', 'c']);
  assert.equal(c.intercept.mode, 'explicit');
  assert.equal(c.limits.maxFlows, 10_000);
  assert.equal(c.deliver.allow[0]!.prefix, 16);
});

test('config errors name the field', () => {
  assert.match(issues({ ...base, peers: [...base.peers, { name: 'c', key: KEY, keyId: 1 }] }).join('\n'), /peers\[1\]\.keyId: 1 is used by another peer/);
  assert.match(issues({ ...base, peers: [{ name: 'b', keyId: 1 }] }).join('\n'), /peers\[0\]: give exactly one of key \(hex\) or keyFile/);
  assert.match(
    issues({ ...base, table: [{ protocol: 'tcp', listen: '127.0.0.1:1' }] }).join('\n'),
    /table\[0\]: explicit interception needs listen and target/,
  );
  assert.match(
    issues({ ...base, table: [{ protocol: 'tcp', listen: '127.0.0.1:1', target: '10.0.0.1:2', peers: ['x'] }] }).join('\n'),
    /table\[0\]\.peers: no peer named 'x'/,
  );
  assert.match(issues({ ...base, table: [{ protocol: 'tcp', dstPort: '90-80' }], intercept: { mode: 'transparent' } }).join('\n'), /runs backwards/);
  assert.match(issues({ ...base, table: [{ protocol: 'icmp', dstPort: 1 }], intercept: { mode: 'transparent' } }).join('\n'), /ICMP has no ports/);
  // latencySensitive: a boolean, carried into the rule only when true.
  const [ls, plain] = compileInterceptTable([
    { protocol: 'tcp', dstPort: 22, latencySensitive: true },
    { protocol: 'tcp', latencySensitive: false },
  ]);
  assert.equal(ls!.latencySensitive, true);
  assert.equal(plain!.latencySensitive, undefined);
  assert.throws(() => compileInterceptTable([{ protocol: 'tcp', latencySensitive: 'yes' }]), /latencySensitive/);
  assert.match(issues({ ...base, peers: [{ ...base.peers[0], maxRate: 'fast' }] }).join('\n'), /maxRate: 'fast' is not a bit rate/);
  assert.match(issues({ ...base, routes: [{ dst: '10.0.0.0/33', peer: 'b' }] }).join('\n'), /routes\[0\]\.dst/);
  assert.match(issues({ ...base, bogus: 1 }).join('\n'), /bogus|Unrecognized/i);
  assert.throws(() => parseTpoConfigText('name: [', 'x.yaml'), TpoConfigError);
});

test('bit rates', () => {
  assert.equal(parseBitRate('50M'), 6_250_000);
  assert.equal(parseBitRate('800k'), 100_000);
  assert.equal(parseBitRate('2500000'), 312_500);
  assert.throws(() => parseBitRate('-1'));
  assert.equal(parseBitRate(50_000_000), 6_250_000, 'a number is bits/s');
});

test('flow table: first match wins; prefixes and port ranges; no match leaves the flow alone', () => {
  const t = InterceptTable.compile([
    { name: 'web', protocol: 'tcp', dst: '10.2.0.0/16', dstPort: '80-443' },
    { name: 'any-tcp-10.2', protocol: 'tcp', dst: '10.2.0.0/16' },
    { name: 'dns', protocol: 'udp', dstPort: 53, src: '192.168.0.0/24' },
    { name: 'v6', protocol: 'tcp', dst: '2001:db8::/32' },
  ]);
  const k = (protocol: 'tcp' | 'udp', src: string, dst: string, dstPort: number) => t.lookup({ protocol, src, srcPort: 40000, dst, dstPort })?.name;
  assert.equal(k('tcp', '192.168.0.5', '10.2.3.4', 443), 'web');
  assert.equal(k('tcp', '192.168.0.5', '10.2.3.4', 8080), 'any-tcp-10.2');
  assert.equal(k('tcp', '192.168.0.5', '10.3.3.4', 443), undefined);
  assert.equal(k('udp', '192.168.0.5', '8.8.8.8', 53), 'dns');
  assert.equal(k('udp', '192.168.1.5', '8.8.8.8', 53), undefined, 'source outside the prefix');
  assert.equal(k('tcp', '2001:db9::1', '2001:db8::1', 22), 'v6');
  assert.throws(() => compileInterceptTable([{ protocol: 'tcp', src: '10.0.0.0/8', dst: '2001:db8::/32' }]), FlowTableError);
});

test('route table: an entry naming peers wins; else longest prefix; one peer is the default', () => {
  const entry = (peers: string[] = []) => compileInterceptTable([{ protocol: 'tcp', peers }])[0]!;
  const routes = new RouteTable(
    [
      { dst: { family: 4, address: '10.0.0.0', prefix: 8 }, peer: 'wide' },
      { dst: { family: 4, address: '10.2.0.0', prefix: 16 }, peer: 'narrow' },
    ],
    ['wide', 'narrow'],
  );
  assert.deepEqual(routes.choose(entry(), '10.2.1.1'), { ok: true, peers: ['narrow'] });
  assert.deepEqual(routes.choose(entry(), '10.3.1.1'), { ok: true, peers: ['wide'] });
  assert.deepEqual(routes.choose(entry(['x', 'y']), '10.2.1.1'), { ok: true, peers: ['x', 'y'] });
  assert.equal(routes.choose(entry(), '192.0.2.1').ok, false);
  assert.deepEqual(new RouteTable([], ['only']).choose(entry(), '192.0.2.1'), { ok: true, peers: ['only'] });
});

test('hostile TPO config text: alias bombs, deep nesting and numbers that are not finite are refused naming the field, never thrown raw', () => {
  const refused = (text: string): string => {
    try {
      parseTpoConfigText(text, 'hostile.yaml', () => Buffer.from('cd'.repeat(32)));
    } catch (err) {
      assert.ok(err instanceof TpoConfigError, String(err));
      assert.match(err.message, /hostile\.yaml/);
      return err.issues.join('\n');
    }
    assert.fail('expected the config to be refused');
  };
  const bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (const [i, c] of [...'bcdefghi'].entries()) bomb.push(`${c}: &${c} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`);
  bomb.push('name: *i');
  assert.match(refused(bomb.join('\n')), /aliases expand too far/);
  assert.match(refused(`name: ${'['.repeat(20_000)}${']'.repeat(20_000)}`), /nested deeper than 32 levels/);
  const peer = `peers:\n  - { name: b, address: "192.0.2.2:7400", key: ${KEY}, keyId: 1 }\n`;
  assert.match(refused(`listen: 127.0.0.1:7400\n${peer}limits: { maxFlows: 1e400 }\n`), /limits\.maxFlows: must be a finite number \(got Infinity\)/);
  assert.match(
    refused(`listen: 127.0.0.1:7400\n${peer}deliver: { connectTimeoutMs: .nan }\n`),
    /deliver\.connectTimeoutMs: must be a finite number \(got NaN\)/,
  );
  assert.match(refused(`listen: 127.0.0.1:7400\n${peer}limits: { udpIdleMs: 1500.5 }\n`), /limits\.udpIdleMs: must be an integer/);
});

test('keys: an odd hex digit is refused, not dropped; key files hex or 16..64 raw bytes', () => {
  const odd = 'ab'.repeat(16) + 'c';
  assert.match(issues({ ...base, peers: [{ ...base.peers[0], key: odd }] }).join('\n'), /peers\[0\]\.key: 33 hex digits: an odd number/);
  const withFile = (content: Buffer) => {
    try {
      return parseTpoConfig({ ...base, peers: [{ name: 'b', keyFile: 'k', keyId: 1 }] }, 't', () => content).peers[0]!.key;
    } catch (err) {
      assert.ok(err instanceof TpoConfigError, String(err));
      return err.issues.join('\n');
    }
  };
  assert.deepEqual(withFile(Buffer.from(`${'cd'.repeat(32)}\n`)), Buffer.from('cd'.repeat(32), 'hex'));
  assert.match(String(withFile(Buffer.from(`${'cd'.repeat(16)}e\n`))), /peers\[0\]\.keyFile: k: 33 hex digits: an odd number/);
  assert.match(String(withFile(Buffer.from('ab'.repeat(65)))), /130 hex digits: at most 128/);
  const raw = Buffer.alloc(32, 0xf7);
  assert.deepEqual(withFile(raw), raw);
  assert.match(String(withFile(Buffer.alloc(65, 0xf7))), /65 bytes: a raw key has 16 to 64 bytes/);
  assert.match(String(withFile(Buffer.alloc(8, 0xf7))), /8 bytes: a raw key has 16 to 64 bytes/);
});

test('rates: 0, negative, Infinity and absurd values are refused with the field; numbers are bits/s', () => {
  const rateIssue = (maxRate: unknown) => issues({ ...base, peers: [{ ...base.peers[0], maxRate }] }).join('\n');
  assert.match(rateIssue(0), /peers\[0\]\.maxRate: 0 bits\/s is below the least rate of 64k \(for no cap, leave the field out\)/);
  assert.match(rateIssue('0'), /peers\[0\]\.maxRate: 0 bits\/s is below the least rate of 64k \(for no cap, leave the field out\)/);
  assert.match(rateIssue('0k'), /for no cap, leave the field out/);
  assert.match(rateIssue(-5), /below the least rate/);
  assert.match(rateIssue(Infinity), /peers\[0\]\.maxRate: .*finite/);
  assert.match(rateIssue(NaN), /peers\[0\]\.maxRate: .*finite/);
  assert.match(rateIssue(`1${'0'.repeat(400)}`), /is not a finite bit rate/);
  assert.match(rateIssue('5000G'), /above the greatest rate/);
  assert.match(issues({ ...base, peers: [{ ...base.peers[0], initialRate: '1k' }] }).join('\n'), /peers\[0\]\.initialRate: 1k bits\/s is below the least rate/);
  const ok = parseTpoConfig({ ...base, peers: [{ ...base.peers[0], maxRate: 64_000, initialRate: '10M' }] }, 't');
  assert.equal(ok.peers[0]!.maxRateBps, 8000);
  assert.equal(ok.peers[0]!.initialRateBps, 1_250_000);
  // The path MTU: an integer within what IP carries; absent, the link picks (1500, or 9000 to a loopback peer).
  assert.equal(parseTpoConfig({ ...base, peers: [{ ...base.peers[0], mtu: 9000 }] }, 't').peers[0]!.mtu, 9000);
  assert.equal(ok.peers[0]!.mtu, undefined);
  for (const bad of [575, 65_536, 1500.5, '1500'])
    assert.match(issues({ ...base, peers: [{ ...base.peers[0], mtu: bad }] }).join('\n'), /peers\[0\]\.mtu/, `mtu ${bad}`);
  assert.throws(() => parseBitRate(0), /below the least rate/);
  assert.throws(() => parseBitRate(Infinity), /finite/);
});

test('key files: regular files of at most 1 KiB that only the owner may read, relative to the config', async () => {
  const { mkdtempSync, writeFileSync, chmodSync, rmSync, truncateSync } = await import('node:fs');
  const { execFileSync } = await import('node:child_process');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { readKeyFile } = await import('../../src/tpo/config/config.js');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-key-'));
  try {
    const k = join(dir, 'k');
    writeFileSync(k, `${'cd'.repeat(32)}\n`, { mode: 0o600 });
    chmodSync(k, 0o600);
    assert.equal(readKeyFile(k).toString().trim(), 'cd'.repeat(32));
    chmodSync(k, 0o644);
    assert.throws(() => readKeyFile(k), /permissions 0644 are too open: other users may read or change the key \(chmod 600 /);
    chmodSync(k, 0o640);
    assert.throws(() => readKeyFile(k), /permissions 0640 are too open/);
    chmodSync(k, 0o400);
    assert.equal(readKeyFile(k).length, 65);
    truncateSync(k, 1 << 30);
    assert.throws(() => readKeyFile(k), /1073741824 bytes, more than the limit of 1024/);
    execFileSync('mkfifo', ['-m', '600', join(dir, 'fifo')]);
    assert.throws(() => readKeyFile(join(dir, 'fifo')), /FIFO/);
    // Through the CLI's loader: the path is relative to the config file, the refusal names the field.
    writeFileSync(join(dir, 'key.hex'), 'ef'.repeat(32), { mode: 0o600 });
    chmodSync(join(dir, 'key.hex'), 0o600);
    writeFileSync(join(dir, 'open.hex'), 'ef'.repeat(32), { mode: 0o644 });
    chmodSync(join(dir, 'open.hex'), 0o644);
    const { loadTpoConfig } = await import('../../src/cli/tpo.js');
    const cfg = (keyFile: string) => `listen: 127.0.0.1:0\npeers:\n  - { name: b, keyFile: ${keyFile}, keyId: 1 }\n`;
    writeFileSync(join(dir, 'good.yaml'), cfg('key.hex'));
    writeFileSync(join(dir, 'open.yaml'), cfg('open.hex'));
    const prev = process.cwd();
    process.chdir(tmpdir());
    try {
      assert.deepEqual(loadTpoConfig(join(dir, 'good.yaml')).peers[0]!.key, Buffer.from('ef'.repeat(32), 'hex'));
      assert.throws(() => loadTpoConfig(join(dir, 'open.yaml')), /open\.yaml.*peers\[0\]\.keyFile: cannot read open\.hex: permissions 0644 are too open/);
    } finally {
      process.chdir(prev);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('explicit listeners other hosts can reach must name their clients (src), as a relay names allow', () => {
  const entry = { protocol: 'udp', listen: '0.0.0.0:5353', target: '10.3.0.1:53' };
  assert.match(issues({ ...base, table: [entry] }).join('\n'), /table\[0\]\.src: required for a listener on 0\.0\.0\.0/);
  assert.match(issues({ ...base, table: [{ ...entry, listen: '[::]:5353' }] }).join('\n'), /table\[0\]\.src: required/);
  assert.match(issues({ ...base, table: [{ ...entry, listen: '192.0.2.1:5353' }] }).join('\n'), /table\[0\]\.src: required/);
  const ok = (e: object) => parseTpoConfig({ ...base, table: [e] }, 't');
  assert.equal(ok({ ...entry, src: '10.1.0.0/16' }).table[0]!.src?.prefix, 16);
  assert.equal(ok({ ...entry, src: 'any' }).table[0]!.src, undefined, "'any' serves everyone");
  assert.equal(ok({ ...entry, listen: '127.0.0.2:5353' }).table.length, 1, 'loopback: reachable from this host only');
  assert.equal(ok({ ...entry, listen: '[::1]:5353' }).table.length, 1);
  // Transparent entries match routed traffic: src stays optional there.
  assert.equal(parseTpoConfig({ ...base, intercept: { mode: 'transparent' }, table: [{ protocol: 'udp', dst: '10.3.0.0/16' }] }, 't').table.length, 1);
});
