/**
 * TPO meshes (issue 21) on a real etcd (harness/etcd/etcd-server.ts) with
 * three real TpoGateways on loopback, each on its own address (127.0.0.1,
 * .2, .3): each site registers its gateway and publishes a TCP and a UDP
 * service; a third site started later becomes a peer of the first two
 * with no call on them, and traffic crosses every pair; registrations
 * that are invalid, use another cluster key or a taken key id, or that a
 * gateway cannot apply whole, are refused and leave nothing behind; a
 * registration deleted, or whose lease ends, takes its peer away; the
 * store holds no key material. Waits bound hangs only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import type { StoreLease } from '../../src/cluster/store.js';
import { TpoMesh } from '../../src/cluster/tpo-mesh.js';
import { pairKey, pairKeyId, readClusterKey, type ClusterKey } from '../../src/cluster/tpo-mesh-keys.js';
import { parseTpoConfig, TpoGateway } from '../../src/tpo/index.js';
import { etcdSkipReason, startEtcd, type EtcdServer } from '../../harness/etcd/etcd-server.js';
import { freeServicePort, freeUdpPort, until } from '../tpo/gateway-helpers.js';

const skip = etcdSkipReason() ?? false;
if (skip) process.stdout.write(`# skipping the TPO mesh tests: ${skip}\n`);

const PREFIX = '/mesh-test/';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Site {
  readonly name: string;
  readonly host: string;
  /** The port this site's services are opened on at the other sites (TCP `hash`, UDP `echo`). */
  readonly servicePort: number;
  readonly gateway: TpoGateway;
  readonly store: EtcdStore;
  readonly lease: StoreLease;
  readonly mesh: TpoMesh;
  readonly logs: { level: string; message: string }[];
  close(): Promise<void>;
}

/** A TCP server on `host` answering each connection with the sha256 of what it read; a UDP echo server beside it. */
async function servers(host: string): Promise<{ tcp: number; udp: number; close: () => Promise<void> }> {
  const tcp = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.on('end', () => s.end(h.digest('hex')));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => tcp.listen(0, host, r));
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, from) => udp.send(Buffer.concat([Buffer.from('echo:'), m]), from.port, from.address));
  await new Promise<void>((r) => udp.bind(0, host, r));
  return {
    tcp: (tcp.address() as net.AddressInfo).port,
    udp: udp.address().port,
    close: async () => {
      await new Promise<void>((r) => tcp.close(() => r()));
      await new Promise<void>((r) => udp.close(() => r()));
    },
  };
}

/** Sends `data` over TCP to host:port, half-closes, and returns what came back (or the error's code). */
function tcpExchange(host: string, port: number, data: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    let got = '';
    const timer = setTimeout(() => (s.destroy(), resolve('hang')), 20_000);
    s.on('connect', () => s.end(data));
    s.on('data', (d) => (got += d));
    s.on('end', () => (clearTimeout(timer), s.destroy(), resolve(got)));
    s.on('error', (e: NodeJS.ErrnoException) => (clearTimeout(timer), resolve(`error:${e.code}`)));
  });
}

/** Sends one datagram from `host` to host:port until an answer comes (the first may race the pair forming); returns it. */
async function udpExchange(host: string, port: number, text: string): Promise<string> {
  const c = dgram.createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, host, r));
  try {
    const answer = new Promise<string>((resolve) => c.once('message', (m) => resolve(m.toString())));
    for (let i = 0; i < 40; i++) {
      c.send(text, port, host);
      const got = await Promise.race([answer, new Promise<undefined>((r) => setTimeout(() => r(undefined), 250))]);
      if (got !== undefined) return got;
    }
    return 'no answer';
  } finally {
    c.close();
  }
}

describe('TPO mesh on etcd', { skip, timeout: 180_000 }, () => {
  let etcd: EtcdServer;
  let dir: string;
  let clusterKey: ClusterKey;
  const sites: Site[] = [];

  async function startSite(name: string, host: string): Promise<Site> {
    const srv = await servers(host);
    const servicePort = await freeServicePort();
    const gateway = await TpoGateway.start({
      config: parseTpoConfig({ name, listen: `${host}:${await freeUdpPort(host)}`, deliver: { allow: [`${host}/32`] } }),
      control: false,
    });
    const store = new EtcdStore({ endpoints: [etcd.endpoint], callTimeoutMs: 5000 });
    const lease = await store.grantLease(10, { autoKeepAlive: true });
    const logs: { level: string; message: string }[] = [];
    const mesh = await TpoMesh.start({
      store,
      prefix: PREFIX,
      lease,
      gateway,
      clusterKey,
      services: [
        { name: 'hash', protocol: 'tcp', port: servicePort, target: `${host}:${srv.tcp}` },
        { name: 'echo', protocol: 'udp', port: servicePort, target: `${host}:${srv.udp}` },
      ],
      listen: { host },
      log: (level, message) => logs.push({ level, message }),
    });
    const site: Site = {
      name,
      host,
      servicePort,
      gateway,
      store,
      lease,
      mesh,
      logs,
      async close() {
        await mesh.close();
        await gateway.close();
        await lease.revoke().catch(() => undefined);
        store.close();
        await srv.close();
      },
    };
    sites.push(site);
    return site;
  }

  /** What each site has of the mesh, for a wait that times out: peers applied and refused, the gateway's peer links, the mesh's log. */
  const meshState = () =>
    sites.map((s) => ({
      site: s.name,
      meshPeers: s.mesh.peers(),
      refused: s.mesh.refused(),
      links: s.gateway.status().peers.map((p) => ({ name: p.name, role: p.role, up: p.up, sessions: p.sessions, link: p.link, drops: p.drops })),
      logs: s.logs.slice(-10),
    }));
  const peerUp = (s: Site, peer: string) => s.gateway.status().peers.find((p) => p.name === peer)?.up === true;
  const peerNames = (s: Site) => s.gateway.peers().map((p) => p.name);
  const entryNames = (s: Site) => s.gateway.table().map((e) => e.name);

  /** Traffic from `from`'s site to `to`'s services, through `from`'s gateway: a TCP transfer byte-exact and a UDP echo. */
  async function crosses(from: Site, to: Site): Promise<void> {
    const data = randomBytes(200_000);
    assert.equal(await tcpExchange(from.host, to.servicePort, data), sha(data), `TCP ${from.name} → ${to.name}`);
    assert.equal(await udpExchange(from.host, to.servicePort, `from ${from.name}`), `echo:from ${from.name}`, `UDP ${from.name} → ${to.name}`);
  }

  before(async () => {
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 'sluice-mesh-'));
    writeFileSync(join(dir, 'mesh-test.key'), randomBytes(32).toString('hex'));
    chmodSync(join(dir, 'mesh-test.key'), 0o600);
    clusterKey = readClusterKey(join(dir, 'mesh-test.key'));
  });
  after(async () => {
    for (const s of sites.reverse()) await s.close().catch(() => undefined);
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pairs registered gateways; a third site joins with no edit on the others; traffic crosses every pair', async () => {
    assert.equal(clusterKey.ref, 'mesh-test', 'the key is named after its file');
    const a = await startSite('site-a', '127.0.0.1');
    const b = await startSite('site-b', '127.0.0.2');
    await until('a and b pair', () => peerUp(a, 'site-b') && peerUp(b, 'site-a'), undefined, meshState);
    assert.deepEqual(a.mesh.peers(), ['site-b']);
    assert.deepEqual(entryNames(a), ['site-b.hash', 'site-b.echo']);
    // The lower name initiates; both derive the same key id.
    const viewAtA = a.gateway.peers().find((p) => p.name === 'site-b');
    const viewAtB = b.gateway.peers().find((p) => p.name === 'site-a');
    assert.equal(viewAtA?.address, b.mesh.record.value.match(/"address":"([^"]+)"/)?.[1]);
    assert.equal(viewAtB?.address, undefined, 'site-b answers');
    assert.equal(viewAtA?.keyId, pairKeyId(a.mesh.record.keyId, b.mesh.record.keyId));
    assert.equal(viewAtB?.keyId, viewAtA?.keyId);
    await crosses(a, b);
    await crosses(b, a);

    // Site C starts later: nothing is called on A or B; their meshes see C's registration.
    const c = await startSite('site-c', '127.0.0.3');
    await until('c pairs with a and b', () => peerUp(a, 'site-c') && peerUp(b, 'site-c') && peerUp(c, 'site-a') && peerUp(c, 'site-b'), undefined, meshState);
    assert.deepEqual(a.mesh.peers(), ['site-b', 'site-c']);
    assert.deepEqual(b.mesh.peers(), ['site-a', 'site-c']);
    assert.deepEqual(c.mesh.peers(), ['site-a', 'site-b']);
    await crosses(a, c);
    await crosses(c, b);
    await crosses(b, c);
  });

  it('stores no key material: the cluster key and the pair keys appear in no value, in hex or base64', async () => {
    const read = await sites[0]!.store.getPrefix(PREFIX);
    assert.equal(read.entries.length, 3);
    const text = read.entries.map((e) => `${e.key}=${e.value}`).join('\n');
    const names = sites.map((s) => s.name);
    const keys = [Buffer.from(clusterKey.key), ...names.flatMap((x) => names.filter((y) => x < y).map((y) => pairKey(clusterKey, x, y)))];
    for (const k of keys) {
      // Any 8 bytes of a key, in hex of either case; the key in base64 at each of the three byte alignments.
      for (let i = 0; i + 8 <= k.length; i++) assert.ok(!text.toLowerCase().includes(k.subarray(i, i + 8).toString('hex')), 'no key bytes in hex');
      for (let off = 0; off < 3; off++) {
        const b64 = k.subarray(off, off + 12);
        assert.ok(!text.includes(b64.toString('base64')) && !text.includes(b64.toString('base64url')), 'no key bytes in base64');
      }
    }
    for (const e of read.entries) {
      assert.deepEqual(Object.keys(JSON.parse(e.value) as object).sort(), ['address', 'keyId', 'keyRef', 'name', 'routes', 'services']);
      assert.equal((JSON.parse(e.value) as { keyRef: string }).keyRef, 'mesh-test');
    }
  });

  it('refuses invalid registrations and applies none of them, not even half', async () => {
    const [a, b, c] = sites as [Site, Site, Site];
    const key = `${PREFIX}gateways/evil`;
    const valid = { name: 'evil', address: '127.0.0.9:7400', keyId: 999, keyRef: 'mesh-test', routes: ['127.0.0.9/32'], services: [] };
    const cases: [unknown, RegExp][] = [
      [{ ...valid, key: '00'.repeat(32) }, /unknown field 'key'/],
      [{ ...valid, keyRef: 'other' }, /uses cluster key 'other', this gateway has 'mesh-test'/],
      [{ ...valid, name: 'site-z' }, /its name 'site-z' is not its key's \('evil'\)/],
      [
        { ...valid, services: [{ name: 'x', protocol: 'tcp', port: 1, target: '10.0.0.1:80' }] },
        /services\[0\]\.target: 10\.0\.0\.1 is not within the gateway's routes/,
      ],
      [{ ...valid, address: '0.0.0.0:7400' }, /0\.0\.0\.0 is no address another site can reach/],
      ['{not json', /not JSON/],
    ];
    for (const [value, reason] of cases) {
      await a.store.put(key, typeof value === 'string' ? value : JSON.stringify(value));
      for (const s of sites) {
        await until(`${s.name} refuses ${String(reason)}`, () => s.mesh.refused().some((r) => r.name === 'evil' && reason.test(r.reason)));
        assert.ok(!peerNames(s).includes('evil'));
        assert.ok(s.logs.some((l) => l.level === 'warn' && /registration \/mesh-test\/gateways\/evil refused/.test(l.message)));
      }
    }
    // Site A's key id taken: A refuses it as its own, B and C as A's.
    await a.store.put(key, JSON.stringify({ ...valid, keyId: a.mesh.record.keyId }));
    await until('refused for its key id', () =>
      sites.every((s) => s.mesh.refused().some((r) => r.name === 'evil' && /its keyId \d+ is (this gateway's own|gateway site-a's)/.test(r.reason))),
    );

    // Valid, but one service's listener cannot open at site A (the port is taken there): A applies nothing; B and C apply it all.
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      await a.store.put(
        key,
        JSON.stringify({
          ...valid,
          services: [
            { name: 'one', protocol: 'udp', port, target: '127.0.0.9:53' },
            { name: 'two', protocol: 'tcp', port, target: '127.0.0.9:80' },
          ],
        }),
      );
      await until('b and c add evil', () => peerNames(b).includes('evil') && peerNames(c).includes('evil'));
      await until('a refuses evil', () => a.mesh.refused().some((r) => r.name === 'evil' && /the gateway refused it/.test(r.reason)));
      assert.ok(!peerNames(a).includes('evil'), 'the peer added first was taken away again');
      assert.ok(!entryNames(a).some((e) => e.startsWith('evil.')), 'and the entry that did open');
      assert.deepEqual(
        entryNames(b).filter((e) => e.startsWith('evil.')),
        ['evil.one', 'evil.two'],
      );
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
    // The port is free again: A applies the registration on its own (a refusal that may pass is retried on a timer).
    await until(
      'a applies evil once the port is free',
      () => peerNames(a).includes('evil') && !a.mesh.refused().some((r) => r.name === 'evil'),
      20_000,
      meshState,
    );
    assert.deepEqual(
      entryNames(a).filter((e) => e.startsWith('evil.')),
      ['evil.one', 'evil.two'],
    );
    await a.store.delete(key);
    await until('evil gone everywhere', () => sites.every((s) => !peerNames(s).includes('evil') && !s.mesh.refused().some((r) => r.name === 'evil')));
    assert.ok(!entryNames(b).some((e) => e.startsWith('evil.')));
  });

  it('a deleted registration, or one whose lease ends, takes its peer and entries away', async () => {
    const [a, b, c] = sites as [Site, Site, Site];
    await a.store.delete(`${PREFIX}gateways/site-c`);
    await until('a and b drop c', () => !peerNames(a).includes('site-c') && !peerNames(b).includes('site-c'));
    for (const s of [a, b]) assert.ok(!entryNames(s).some((e) => e.startsWith('site-c.')), `${s.name}'s listeners for c are gone`);
    assert.equal(await tcpExchange(a.host, c.servicePort, Buffer.from('x')), 'error:ECONNREFUSED');
    assert.ok(c.logs.some((l) => /this gateway's registration .* was deleted/.test(l.message)));
    await crosses(a, b);

    // B's lease ends (revoked here: what expiry does, without the wait): A drops B.
    await b.lease.revoke();
    await until('a drops b', () => !peerNames(a).includes('site-b'));
    assert.deepEqual(a.mesh.peers(), []);
    assert.deepEqual(entryNames(a), []);

    // close() deletes the registration.
    await a.mesh.close();
    assert.equal(await b.store.get(`${PREFIX}gateways/site-a`), undefined);
  });
});
