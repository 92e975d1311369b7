/**
 * TPO meshes in the daemon (issue 21): three `sluice serve --cluster`
 * processes on loopback with a real etcd (harness/etcd/etcd-server.ts),
 * each running one TPO gateway from its `tpo:` list and joining the mesh
 * through its config's `cluster.tpoMesh` (each site on its own address,
 * 127.0.0.1, .2, .3, publishing a UDP echo service). Shows: datagrams sent
 * to a service's listener at one site arrive at the far site and back;
 * a third daemon started later pairs with the first two while nothing is
 * called, signalled or edited on them; the mesh shows in /v1/tpo, the
 * metrics and /v1/cluster like any gateway; the store (and the state
 * files) hold no key material; a SIGHUP that restarts a site's gateway
 * re-registers it; a clean stop deletes the registration and the others
 * drop the peer. Also the config's checks: shapes at parse time, and at
 * start a mesh without --cluster or with a key file others can read.
 * Waits bound hangs only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { PolicyValidationError } from '../../src/index.js';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import { pairKey, pairKeyId, readClusterKey } from '../../src/cluster/tpo-mesh-keys.js';
import { parseServeConfigText } from '../../src/policy/serve-config.js';
import { loadServeConfig, resolveServeConfig } from '../../src/server/config-file.js';
import { TpoMesh, type TpoMeshGateway } from '../../src/cluster/tpo-mesh.js';
import { parseTpoConfigText } from '../../src/tpo/index.js';
import { etcdSkipReason, startEtcd, type EtcdServer } from '../../harness/etcd/etcd-server.js';
import { runCli } from '../../harness/process/cli.js';
import { startServe, type Serve } from '../server/api-helpers.js';
import { freeServicePort, freeUdpPort } from '../tpo/gateway-helpers.js';

const skip = etcdSkipReason() ?? false;
if (skip) process.stdout.write(`# skipping the TPO mesh daemon tests: ${skip}\n`);

const PREFIX = '/sluice/';
const KEY_REF = 'mesh-serve';

interface Echo {
  readonly port: number;
  /** Payloads received (at this, the far side). */
  readonly got: string[];
  close(): Promise<void>;
}

/** A UDP server on `host`: records each datagram and sends it back prefixed with `echo:`. */
async function echoServer(host: string): Promise<Echo> {
  const s = dgram.createSocket('udp4');
  const got: string[] = [];
  s.on('message', (m, from) => {
    got.push(m.toString());
    s.send(Buffer.concat([Buffer.from('echo:'), m]), from.port, from.address);
  });
  await new Promise<void>((r) => s.bind(0, host, r));
  return { port: s.address().port, got, close: () => new Promise<void>((r) => s.close(() => r())) };
}

/**
 * Sends `count` numbered datagrams from `host` to host:port, one at a time,
 * each until its echo comes (the first may race the pair forming; resends
 * bounded). Returns the payloads whose echo came back.
 */
async function exchange(host: string, port: number, tag: string, count: number): Promise<string[]> {
  const c = dgram.createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, host, r));
  const echoed = new Set<string>();
  c.on('message', (m) => echoed.add(m.toString().replace(/^echo:/, '')));
  try {
    for (let i = 0; i < count; i++) {
      const text = `${tag} #${i}`;
      for (let attempt = 0; attempt < 80 && !echoed.has(text); attempt++) {
        c.send(text, port, host);
        for (let w = 0; w < 10 && !echoed.has(text); w++) await sleep(25);
      }
    }
    return [...echoed];
  } finally {
    c.close();
  }
}

async function poll(what: string, ok: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(200);
  }
}

describe('serve config: cluster.tpoMesh', () => {
  const issues = (text: string) => {
    try {
      parseServeConfigText(text);
    } catch (e) {
      assert.ok(e instanceof PolicyValidationError, String(e));
      return e.issues;
    }
    assert.fail('accepted');
  };

  test('a full section parses; keyFile resolves against the config folder', () => {
    const text = `
tpo: [ { config: site-a.yaml } ]
cluster:
  tpoMesh:
    gateway: site-a
    keyFile: keys/mesh-2025.key
    keyRef: mesh-2025
    address: 198.51.100.1:7400
    keyId: 4242
    routes: [10.1.0.0/16]
    listen: { host: 10.1.0.1, src: 10.1.0.0/16 }
    services: [ { name: web, protocol: tcp, port: 8080, target: 10.1.0.10:80 } ]
    peer: { maxRate: 50M, mtu: 1400 }
`;
    const c = resolveServeConfig(text, '/etc/sluice/serve.yaml');
    assert.equal(c.cluster?.tpoMesh?.keyFile, '/etc/sluice/keys/mesh-2025.key');
    assert.deepEqual(c.cluster?.tpoMesh?.services, [{ name: 'web', protocol: 'tcp', port: 8080, target: '10.1.0.10:80' }]);
    assert.deepEqual(c.cluster?.tpoMesh?.peer, { maxRate: '50M', mtu: 1400 });
    assert.deepEqual(parseServeConfigText('cluster: { tpoMesh: { keyFile: k } }').cluster?.tpoMesh?.services, []);
    assert.equal(parseServeConfigText('{}').cluster, undefined);
  });

  test('refuses bad fields with their paths', () => {
    const at = (text: string, path: string, message: RegExp) => {
      const found = issues(text);
      assert.ok(
        found.some((i) => i.path === path && message.test(i.message)),
        `${path} ${String(message)}: ${JSON.stringify(found)}`,
      );
    };
    at('cluster: { tpoMesh: {} }', 'cluster.tpoMesh.keyFile', /required/);
    at('cluster: { tpoMesh: { keyFile: k, key: 00ff } }', 'cluster.tpoMesh', /unknown field 'key'/);
    at('cluster: { mesh: {} }', 'cluster', /unknown field 'mesh'/);
    at('cluster: { tpoMesh: { keyFile: k, address: "0.0.0.0:7400" } }', 'cluster.tpoMesh.address', /no address another site can reach/);
    at('cluster: { tpoMesh: { keyFile: k, address: "gw.example:7400" } }', 'cluster.tpoMesh.address', /not an IPv4 or IPv6 address/);
    at('cluster: { tpoMesh: { keyFile: k, keyId: 70000 } }', 'cluster.tpoMesh.keyId', /65535/);
    at('cluster: { tpoMesh: { keyFile: k, routes: [10.0.0.0/99] } }', 'cluster.tpoMesh.routes[0]', /./);
    at('cluster: { tpoMesh: { keyFile: k, listen: { host: here } } }', 'cluster.tpoMesh.listen.host', /IP address/);
    at('cluster: { tpoMesh: { keyFile: k, peer: { maxRate: fast } } }', 'cluster.tpoMesh.peer.maxRate', /not a bit rate/);
    at(
      'cluster: { tpoMesh: { keyFile: k, services: [ { name: web, protocol: sctp, port: 1, target: "10.0.0.1:80" } ] } }',
      'cluster.tpoMesh.services[0].protocol',
      /./,
    );
    at(
      'cluster: { tpoMesh: { keyFile: k, services: [ { name: "a b", protocol: tcp, port: 1, target: "10.0.0.1:80" } ] } }',
      'cluster.tpoMesh.services[0].name',
      /letters/,
    );
  });
});

test('the example sites (examples/serve-tpo-mesh-{a,b}.yaml) are valid registrations', () => {
  const root = fileURLToPath(new URL('../../examples/', import.meta.url));
  const records = ['a', 'b'].map((s) => {
    const c = loadServeConfig(join(root, `serve-tpo-mesh-${s}.yaml`));
    const mesh = c.cluster?.tpoMesh;
    assert.ok(mesh);
    assert.equal(mesh.keyFile, join(root, 'mesh-example.key'));
    const tpo = parseTpoConfigText(readFileSync(c.tpo[0]!.config, 'utf8'));
    const gateway = { name: tpo.name, config: tpo, address: () => ({ address: tpo.listen.address, port: tpo.listen.port }) };
    const r = TpoMesh.record({
      store: undefined as never,
      lease: undefined as never,
      prefix: PREFIX,
      gateway: gateway as unknown as TpoMeshGateway,
      clusterKey: { ref: 'mesh-example', key: randomBytes(32) },
      services: mesh.services,
    });
    return JSON.parse(r.value) as { name: string; address: string; services: { port: number }[] };
  });
  assert.deepEqual(
    records.map((r) => [r.name, r.address]),
    [
      ['site-a', '127.0.0.1:7400'],
      ['site-b', '127.0.0.2:7400'],
    ],
  );
  const ports = records.flatMap((r) => r.services.map((x) => x.port));
  assert.equal(new Set(ports).size, ports.length, 'service ports are unique in the mesh');
});

interface Site {
  readonly name: string;
  readonly host: string;
  readonly node: string;
  readonly servicePort: number;
  readonly echo: Echo;
  readonly tpoFile: string;
  readonly serveFile: string;
  readonly stateFile: string;
  serve: Serve;
}

describe('TPO mesh in sluice serve, on etcd', { skip, timeout: 420_000 }, () => {
  let etcd: EtcdServer;
  let store: EtcdStore;
  let dir: string;
  let keyFile: string;
  const sites: Site[] = [];

  /** Writes a site's TPO and serve configs (a UDP echo service published as `echo`). */
  async function siteFiles(name: string, host: string, mesh: Record<string, unknown> = {}) {
    const echo = await echoServer(host);
    const servicePort = await freeServicePort();
    const tpoFile = join(dir, `${name}.tpo.json`);
    writeFileSync(
      tpoFile,
      JSON.stringify({ name, listen: `${host}:${await freeUdpPort(host)}`, deliver: { allow: [`${host}/32`] }, control: join(dir, `${name}.sock`) }),
    );
    const serveFile = join(dir, `${name}.serve.json`);
    const stateFile = join(dir, `${name}.state.json`);
    writeFileSync(
      serveFile,
      JSON.stringify({
        tier: 'portable',
        api: { listen: '127.0.0.1:0', tokenFile: join(dir, `${name}.token`) },
        state: stateFile,
        tpo: [{ config: tpoFile }],
        cluster: {
          tpoMesh: {
            keyFile: `${KEY_REF}.key`,
            listen: { host },
            services: [{ name: 'echo', protocol: 'udp', port: servicePort, target: `${host}:${echo.port}` }],
            ...mesh,
          },
        },
      }),
    );
    return { echo, servicePort, tpoFile, serveFile, stateFile };
  }

  const args = (node: string, host: string) => [
    '--cluster',
    `etcd://${etcd.endpoint}`,
    '--node',
    node,
    '--address',
    host,
    '--lease-ttl',
    '5',
    '--log-level',
    'info',
  ];

  async function startSite(name: string, host: string): Promise<Site> {
    const f = await siteFiles(name, host);
    const node = `n-${name}`;
    const serve = await startServe(f.serveFile, args(node, host), join(dir, `${name}.token`));
    const site: Site = { name, host, node, ...f, serve };
    sites.push(site);
    return site;
  }

  const peerUp = async (s: Site, peer: string) => {
    const g = (await s.serve.call('GET', `/v1/tpo/${s.name}`)).body as { peers?: { name: string; up: boolean }[] };
    return g.peers?.some((p) => p.name === peer && p.up) === true;
  };
  const peerNames = async (s: Site) => ((await s.serve.call('GET', `/v1/tpo/${s.name}/peers`)).body as { peers: { name: string }[] }).peers.map((p) => p.name);
  const entryNames = async (s: Site) => ((await s.serve.call('GET', `/v1/tpo/${s.name}/table`)).body as { table: { name: string }[] }).table.map((e) => e.name);
  const meshStatus = async (s: Site) => ((await s.serve.call('GET', '/v1/cluster')).body as { tpoMesh?: Record<string, any> }).tpoMesh;

  /** Datagrams to `to`'s service through `from`'s listener for it arrive at `to`'s echo server, and come back. */
  async function crosses(from: Site, to: Site, count = 10): Promise<void> {
    const tag = `${from.name}->${to.name} ${randomBytes(4).toString('hex')}`;
    const echoed = await exchange(from.host, to.servicePort, tag, count);
    const sent = Array.from({ length: count }, (_, i) => `${tag} #${i}`);
    assert.deepEqual(echoed.sort(), [...sent].sort(), `UDP ${from.name} → ${to.name}: every datagram echoed`);
    for (const text of sent) assert.ok(to.echo.got.includes(text), `'${text}' arrived at ${to.name}'s server`);
  }

  before(async () => {
    etcd = await startEtcd();
    store = new EtcdStore({ endpoints: [etcd.endpoint], callTimeoutMs: 5000 });
    dir = mkdtempSync(join(tmpdir(), 'sluice-mesh-serve-'));
    keyFile = join(dir, `${KEY_REF}.key`);
    writeFileSync(keyFile, randomBytes(32).toString('hex'));
    chmodSync(keyFile, 0o600);
  });
  after(async () => {
    for (const s of sites.reverse()) {
      await s.serve.stop().catch(() => undefined);
      await s.echo.close().catch(() => undefined);
    }
    store?.close();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a mesh without --cluster, and a cluster key file others can read, naming the field', async () => {
    const f = await siteFiles('site-x', '127.0.0.1');
    try {
      const alone = await runCli(['serve', '--config', f.serveFile], 90_000);
      assert.equal(alone.code, 2, `usage exit; stderr: ${alone.stderr}`);
      assert.match(alone.stderr, /cluster\.tpoMesh: needs --cluster/);
      chmodSync(keyFile, 0o644);
      const open = await runCli(['serve', '--config', f.serveFile, ...args('n-x', '127.0.0.1')], 90_000);
      assert.notEqual(open.code, 0, `stderr: ${open.stderr}`);
      assert.match(open.stderr, /cluster\.tpoMesh\.keyFile: .*mesh-serve\.key/);
      assert.equal(await store.get(`${PREFIX}gateways/site-x`), undefined, 'nothing registered');
      assert.equal(await store.get(`${PREFIX}nodes/n-x`), undefined, 'the node left again');
    } finally {
      chmodSync(keyFile, 0o600);
      await f.echo.close();
    }
  });

  it('two daemons pair through the store; datagrams to a service at one site arrive at the far site', async () => {
    const a = await startSite('site-a', '127.0.0.1');
    const b = await startSite('site-b', '127.0.0.2');
    await poll('a and b pair', async () => (await peerUp(a, 'site-b')) && (await peerUp(b, 'site-a')));
    assert.deepEqual(await peerNames(a), ['site-b']);
    assert.deepEqual(await entryNames(a), ['site-b.echo']);
    assert.deepEqual(await entryNames(b), ['site-a.echo']);
    await crosses(a, b);
    await crosses(b, a);

    // The mesh's gateway is one of the daemon's: /v1/tpo, /v1/cluster and the metrics show it.
    const list = (await a.serve.call('GET', '/v1/tpo')).body as { gateways: { name: string }[] };
    assert.deepEqual(
      list.gateways.map((g) => g.name),
      ['site-a'],
    );
    const peers = (await a.serve.call('GET', '/v1/tpo/site-a/peers')).body as { peers: { name: string; keyId: number; address?: string }[] };
    const ma = await meshStatus(a);
    const mb = await meshStatus(b);
    assert.equal(ma?.registered, true);
    assert.equal(ma?.key, `${PREFIX}gateways/site-a`);
    assert.deepEqual(ma?.peers, ['site-b']);
    assert.deepEqual(ma?.refused, []);
    assert.equal(ma?.registration?.keyRef, KEY_REF);
    assert.equal(peers.peers[0]?.keyId, pairKeyId(ma?.registration?.keyId, mb?.registration?.keyId));
    assert.equal(peers.peers[0]?.address, mb?.registration?.address, 'the lower name initiates: it has the address');
    const metrics = (await (await fetch(`${a.serve.url}/metrics`, { headers: { authorization: `Bearer ${a.serve.token}` } })).text()).split('\n');
    assert.ok(
      metrics.some((l) => /^sluice_tpo_peer_up\{/.test(l) && l.includes('gateway="site-a"') && l.includes('peer="site-b"') && / 1$/.test(l)),
      'sluice_tpo_peer_up for the mesh peer',
    );
  });

  it('a third daemon joins: nothing is called, signalled or edited on the first two, and traffic crosses every pair', async () => {
    const [a, b] = sites as [Site, Site];
    const before = [a, b].map((s) => ({ pid: s.serve.child.pid, tpo: readFileSync(s.tpoFile, 'utf8'), serve: readFileSync(s.serveFile, 'utf8') }));
    const c = await startSite('site-c', '127.0.0.3');
    await poll(
      'c pairs with a and b',
      async () => (await peerUp(a, 'site-c')) && (await peerUp(b, 'site-c')) && (await peerUp(c, 'site-a')) && (await peerUp(c, 'site-b')),
    );
    assert.deepEqual(await peerNames(a), ['site-b', 'site-c']);
    assert.deepEqual((await entryNames(b)).sort(), ['site-a.echo', 'site-c.echo']);
    assert.deepEqual((await meshStatus(c))?.peers, ['site-a', 'site-b']);
    await crosses(a, c);
    await crosses(c, b);
    await crosses(b, c);
    [a, b].forEach((s, i) => {
      assert.equal(s.serve.child.pid, before[i]!.pid);
      assert.equal(s.serve.child.exitCode, null, `${s.name} still runs`);
      assert.equal(readFileSync(s.tpoFile, 'utf8'), before[i]!.tpo, `${s.name}'s TPO config unchanged`);
      assert.equal(readFileSync(s.serveFile, 'utf8'), before[i]!.serve, `${s.name}'s serve config unchanged`);
      assert.ok(!s.serve.records().some((r) => /SIGHUP/.test(String(r.msg))), `${s.name} was not reloaded`);
    });
  });

  it('a SIGHUP that restarts a gateway re-registers it; the others pair with it again', async () => {
    const [a, b, c] = sites as [Site, Site, Site];
    // The TPO config file changes (a bigger flow limit), so the reload restarts the gateway: a new TpoGateway without the mesh's peers.
    const cfg = JSON.parse(readFileSync(b.tpoFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(b.tpoFile, JSON.stringify({ ...cfg, limits: { maxFlows: 2048 } }));
    b.serve.child.kill('SIGHUP');
    await b.serve.waitForLog((r) => /reloaded: .*gateways restarted site-b/.test(String(r.msg)), 60_000);
    await poll('b back in the mesh', async () => (await meshStatus(b))?.registered === true && (await peerUp(b, 'site-a')) && (await peerUp(b, 'site-c')));
    await poll('a and c see b again', async () => (await peerUp(a, 'site-b')) && (await peerUp(c, 'site-b')));
    assert.deepEqual((await entryNames(b)).sort(), ['site-a.echo', 'site-c.echo']);
    await crosses(a, b);
    await crosses(b, c);
  });

  it('a SIGHUP that changes cluster.tpoMesh re-registers on the same gateway: the others open the new service', async () => {
    const [a, b, c] = sites as [Site, Site, Site];
    const extra = await echoServer(a.host);
    try {
      const port = await freeUdpPort(a.host);
      const cfg = JSON.parse(readFileSync(a.serveFile, 'utf8')) as { cluster: { tpoMesh: { services: unknown[] } } };
      cfg.cluster.tpoMesh.services.push({ name: 'echo2', protocol: 'udp', port, target: `${a.host}:${extra.port}` });
      writeFileSync(a.serveFile, JSON.stringify(cfg));
      a.serve.child.kill('SIGHUP');
      await a.serve.waitForLog((r) => /^reloaded: no change/.test(String(r.msg)), 60_000);
      await poll('b and c open site-a.echo2', async () => (await entryNames(b)).includes('site-a.echo2') && (await entryNames(c)).includes('site-a.echo2'));
      assert.deepEqual(
        ((await meshStatus(a))?.registration?.services as { name: string }[]).map((x) => x.name),
        ['echo', 'echo2'],
      );
      await poll('a pairs with b and c again', async () => (await peerUp(a, 'site-b')) && (await peerUp(a, 'site-c')));
      // The mesh left the gateway and joined again: its peers are the new mesh's (none refused as taken), one entry per service.
      await poll('a applies b and c afresh', async () => JSON.stringify((await meshStatus(a))?.peers) === '["site-b","site-c"]');
      assert.deepEqual((await meshStatus(a))?.refused, []);
      assert.deepEqual((await entryNames(a)).sort(), ['site-b.echo', 'site-c.echo']);
      const echoed = await exchange(b.host, port, 'b->a echo2', 5);
      assert.equal(echoed.length, 5, 'datagrams to the new service come back');
      assert.equal(extra.got.length >= 5, true, "and arrived at site-a's new server");
      await crosses(c, a);
    } finally {
      await extra.close();
    }
  });

  it('the registration follows the node: registered again under a new lease, the gateway is written again under it', async () => {
    const [a, b] = sites as [Site, Site];
    const self = async () => ((await a.serve.call('GET', '/v1/cluster')).body as { self: { registered: boolean; lease: string | null } }).self;
    const old = (await self()).lease;
    assert.equal((await store.get(`${PREFIX}gateways/site-a`))?.lease, old, 'under the node lease');
    // The node key deleted by hand: the node takes its lease as lost and registers again under a new one.
    await store.delete(`${PREFIX}nodes/${a.node}`);
    await poll('a registered again, its gateway under the new lease', async () => {
      const s = await self();
      return s.registered && s.lease !== old && (await store.get(`${PREFIX}gateways/site-a`))?.lease === s.lease;
    });
    await poll('b pairs with a', () => peerUp(b, 'site-a'));
    await crosses(b, a);
  });

  it('no key material in etcd (nor in the state files): names and addresses only', async () => {
    const all = await store.getPrefix('/');
    const regs = all.entries.filter((e) => e.key.startsWith(`${PREFIX}gateways/`));
    assert.deepEqual(
      regs.map((e) => e.key).sort(),
      ['site-a', 'site-b', 'site-c'].map((n) => `${PREFIX}gateways/${n}`),
    );
    for (const e of regs) {
      const v = JSON.parse(e.value) as Record<string, unknown>;
      assert.deepEqual(Object.keys(v).sort(), ['address', 'keyId', 'keyRef', 'name', 'routes', 'services']);
      assert.equal(v.keyRef, KEY_REF);
    }
    const cluster = readClusterKey(keyFile);
    const names = ['site-a', 'site-b', 'site-c'];
    const keys = [Buffer.from(cluster.key), ...names.flatMap((x) => names.filter((y) => x < y).map((y) => pairKey(cluster, x, y)))];
    const texts: [string, string][] = [['etcd', all.entries.map((e) => `${e.key}=${e.value}`).join('\n')]];
    // site-b's reload wrote its state file (with the gateway's run-time changes: the mesh's peers are not among them).
    assert.ok(existsSync(sites[1]!.stateFile), "site-b's state file");
    for (const s of sites) if (existsSync(s.stateFile)) texts.push([`${s.name}'s state file`, readFileSync(s.stateFile, 'utf8')]);
    for (const [where, text] of texts)
      for (const k of keys) {
        for (let i = 0; i + 8 <= k.length; i++)
          assert.ok(!text.toLowerCase().includes(k.subarray(i, i + 8).toString('hex')), `no key bytes in hex in ${where}`);
        for (let off = 0; off < 3; off++) {
          const b64 = k.subarray(off, off + 12);
          assert.ok(!text.includes(b64.toString('base64')) && !text.includes(b64.toString('base64url')), `no key bytes in base64 in ${where}`);
        }
      }
  });

  it('a clean stop deletes the registration at once; the others drop the peer and its listener', async () => {
    const [a, b, c] = sites as [Site, Site, Site];
    assert.equal(await c.serve.stop('SIGTERM'), 0);
    assert.equal(await store.get(`${PREFIX}gateways/site-c`), undefined, 'gone when the daemon exits, not at lease expiry');
    await poll('a and b drop c', async () => !(await peerNames(a)).includes('site-c') && !(await peerNames(b)).includes('site-c'));
    assert.deepEqual(await entryNames(a), ['site-b.echo']);
    assert.deepEqual((await meshStatus(a))?.peers, ['site-b']);
    await crosses(a, b);
  });
});
