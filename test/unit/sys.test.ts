/**
 * Pure pieces under the batched tier: sockaddr encoding, IPv6 bytes, and
 * the raw-sockaddr source matcher, which must agree with the string
 * matcher the portable tier uses for every address and rule.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SocketAddress } from 'node:net';
import fc from 'fast-check';
import { readSockaddr, writeSockaddr } from '../../src/sys/sockaddr.js';
import { formatIpv6, ipv4ToInt, ipv6Bytes } from '../../src/wire/ip-address.js';
import { createSockaddrMatcher, createSourceMatcher, parseSourceRule, type SourceFilter } from '../../src/policy/source-filter.js';

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
// Few distinct groups so that prefixes and zero runs actually occur.
const ipv6 = fc.array(fc.constantFrom(0, 1, 0xffff, 0x2001, 0xdb8, 0xfe80), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));

test('sockaddr_in / sockaddr_in6 round trip, IPv4-mapped on IPv6 sockets', () => {
  const b = new Uint8Array(40);
  assert.equal(writeSockaddr(b, 4, 4, '192.0.2.7', 5004), 16);
  assert.deepEqual([...b.subarray(4, 12)], [2, 0, 0x13, 0x8c, 192, 0, 2, 7]);
  assert.deepEqual(readSockaddr(b, 4), { family: 4, address: '192.0.2.7', port: 5004 });
  assert.equal(writeSockaddr(b, 0, 6, '2001:db8::1', 1), 28);
  assert.deepEqual(readSockaddr(b, 0), { family: 6, address: '2001:db8::1', port: 1 });
  writeSockaddr(b, 0, 6, '10.1.2.3', 9);
  assert.deepEqual(readSockaddr(b, 0), { family: 6, address: '::ffff:10.1.2.3', port: 9 });
  assert.throws(() => writeSockaddr(b, 0, 4, '::1', 1), TypeError);
});

test('ipv6Bytes/formatIpv6 agree with node:net canonical form (property)', () => {
  fc.assert(
    fc.property(ipv6, (a) => {
      const canonical = new SocketAddress({ address: a, family: 'ipv6' }).address;
      assert.equal(formatIpv6(ipv6Bytes(a)), canonical);
    }),
  );
  assert.deepEqual([...ipv6Bytes('::ffff:1.2.3.4').subarray(10)], [0xff, 0xff, 1, 2, 3, 4]);
  assert.equal(ipv4ToInt('255.0.0.1'), 0xff000001);
});

test('sockaddr matcher agrees with the string matcher (property)', () => {
  const rule = fc.oneof(
    fc.tuple(ipv4, fc.nat(32)).map(([a, p]) => `${a}/${p}`),
    fc.tuple(ipv6, fc.nat(128)).map(([a, p]) => `${a}/${p}`),
  );
  fc.assert(
    fc.property(fc.array(rule, { maxLength: 4 }), fc.oneof(ipv4, ipv6), fc.boolean(), (rules, sender, mapped) => {
      const filter: SourceFilter = {
        any: false,
        rules: rules.map((r) => {
          const p = parseSourceRule(r);
          assert.ok(p.ok);
          return p.rule;
        }),
      };
      const bytes = new Uint8Array(32);
      const isV4 = !sender.includes(':');
      // An IPv4 sender seen on a dual-stack socket arrives as ::ffff:a.b.c.d.
      writeSockaddr(bytes, 0, isV4 && !mapped ? 4 : 6, sender, 1234);
      assert.equal(createSockaddrMatcher(filter)(bytes, 0), createSourceMatcher(filter)(sender), `${sender} vs ${rules.join(',')}`);
    }),
    { numRuns: 500 },
  );
  assert.equal(createSockaddrMatcher({ any: true })(new Uint8Array(32), 0), true);
  assert.equal(createSockaddrMatcher({ any: false, rules: [] })(new Uint8Array(32), 0), false);
});
