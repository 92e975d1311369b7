/**
 * OwnSockets: which senders are one of our own flow sockets (the run-time
 * relay-loop guard). Exact binds match their address only; wildcard binds
 * match this host's addresses; IPv4-mapped senders count as IPv4.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { OwnSockets } from '../../src/dataplane/common/own-sockets.js';
import { writeSockaddr } from '../../src/sys/sockaddr.js';

test('an exactly bound socket matches its own address and port only', () => {
  const own = new OwnSockets();
  const remove = own.add({ family: 4, address: '127.0.0.1', port: 5000 });
  assert.equal(own.isOwn('127.0.0.1', 5000), true);
  assert.equal(own.isOwn('::ffff:127.0.0.1', 5000), true);
  assert.equal(own.isOwn('::ffff:7f00:1', 5000), true);
  assert.equal(own.isOwn('127.0.0.2', 5000), false);
  assert.equal(own.isOwn('127.0.0.1', 5001), false);
  assert.equal(own.isOwn('192.0.2.1', 5000), false);
  remove();
  remove();
  assert.equal(own.isOwn('127.0.0.1', 5000), false);
});

test("a wildcard socket matches this host's addresses on its port, never a remote sender using the same port", () => {
  const own = new OwnSockets();
  own.add({ family: 4, address: '0.0.0.0', port: 6000 });
  own.add({ family: 6, address: '::', port: 6001 });
  assert.equal(own.isOwn('127.0.0.1', 6000), true);
  assert.equal(own.isOwn('127.9.9.9', 6000), true);
  assert.equal(own.isOwn('192.0.2.7', 6000), false, 'a media sender on the same port number elsewhere is not us');
  assert.equal(own.isOwn('::1', 6000), false, 'a 0.0.0.0 socket does not send IPv6');
  assert.equal(own.isOwn('::1', 6001), true);
  assert.equal(own.isOwn('127.0.0.1', 6001), true, ':: is dual-stack');
  assert.equal(own.isOwn('2001:db8::1', 6001), false);
  const local = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && !i.internal && i.family === 'IPv4');
  if (local) assert.equal(own.isOwn(local.address, 6000), true, `${local.address} is this host's`);
});

test('the sockaddr form matches the same way (the batched engine reads raw source addresses)', () => {
  const own = new OwnSockets();
  own.add({ family: 6, address: '::1', port: 7000 });
  const buf = new Uint8Array(64);
  writeSockaddr(buf, 8, 6, '::1', 7000);
  assert.equal(own.isOwnSockaddr(buf, 8), true);
  writeSockaddr(buf, 8, 6, '::1', 7001);
  assert.equal(own.isOwnSockaddr(buf, 8), false);
  writeSockaddr(buf, 8, 4, '127.0.0.1', 7000);
  assert.equal(own.isOwnSockaddr(buf, 8), false);
});
