/**
 * sys/tcp-reset.ts: a socket reset right after end() (its shutdown still
 * pending) is closed, not leaked. With Node's resetAndDestroy() alone the
 * socket emitted an EINVAL 'reset' error and never 'close', and a process
 * holding it never exited (the docs/TPO.md script test hung at exit when a
 * gateway stopped just after forwarding a FIN). An open socket still ends
 * with a real reset that the peer sees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { resetTcpSocket } from '../../src/sys/tcp-reset.js';

/** A connected client and the server's side of it; the server side reads everything. */
async function connectedPair(): Promise<{ client: net.Socket; peer: Promise<net.Socket>; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true });
  const peer = new Promise<net.Socket>((resolve) =>
    server.once('connection', (s) => {
      s.resume();
      resolve(s);
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((r, j) => client.once('connect', r).once('error', j));
  return { client, peer, close: () => server.close() };
}

/** Whether `s` emits 'close' within `ms` (a leaked handle never does). */
const closes = (s: net.Socket, ms = 10_000) =>
  new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });

test('a socket reset while its shutdown is pending (end() this tick) closes; errors, if any, are not EINVAL', async () => {
  const { client, peer, close } = await connectedPair();
  const errors: string[] = [];
  client.on('error', (e: NodeJS.ErrnoException) => errors.push(`${e.code} ${e.syscall}`));
  client.end('last bytes');
  // After end() the shutdown request is issued on a later tick; this runs after it, before it completes.
  await new Promise<void>((r) => process.nextTick(r));
  await new Promise<void>((r) => process.nextTick(r));
  const closed = closes(client);
  resetTcpSocket(client);
  assert.equal(await closed, true, `the socket emitted 'close' (errors: ${errors.join(', ') || 'none'})`);
  assert.ok(!errors.some((e) => e.startsWith('EINVAL')), errors.join(', '));
  (await peer).destroy();
  close();
});

test('an open socket is reset: the peer reads ECONNRESET', async () => {
  const { client, peer, close } = await connectedPair();
  const far = await peer;
  const farError = new Promise<string>((resolve) => {
    far.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    far.once('end', () => resolve('end (a FIN, not a reset)'));
  });
  const closed = closes(client);
  resetTcpSocket(client);
  assert.equal(await closed, true);
  assert.equal(await farError, 'ECONNRESET');
  far.destroy();
  close();
});

test('a socket that never connected, and one already destroyed, are left closed without a throw', async () => {
  const never = new net.Socket();
  assert.doesNotThrow(() => resetTcpSocket(never));
  assert.equal(never.destroyed, true);
  const { client, peer, close } = await connectedPair();
  client.destroy();
  assert.doesNotThrow(() => resetTcpSocket(client));
  (await peer).destroy();
  close();
});
