/**
 * Transparent interception (issue #7) end to end, in three namespaces:
 *
 *   client 10.77.1.2 ── 10.77.1.1 gw 10.77.2.1 ── 10.77.2.2 server
 *
 * The interceptor runs in `gw` (a child process: test/fixtures/intercept-
 * gateway.ts), the client talks to addresses in `server`. Shows: TCP and
 * UDP flows of the table reach the interceptor with their original
 * destination, first match wins, other traffic reaches the server
 * untouched, UDP replies come from the original destination, and neither
 * close() nor a SIGKILL followed by a new start leaves a table, rule, ip
 * rule or route of Sluice behind. Root only; every address and rule lives
 * in namespaces this test creates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { createTopology, rootSkipReason, type NsProcess, type Topology } from '../../harness/netns/netns.js';
import { nftTables } from '../../harness/netns/nft.js';

const skip = rootSkipReason();
const LOCAL_CLIENT = fileURLToPath(new URL('../fixtures/intercept-local-client.ts', import.meta.url));
const GATEWAY = fileURLToPath(new URL('../fixtures/intercept-gateway.ts', import.meta.url));
const INSTANCE = 'nstest';
const MARK = 0x1234;

const TABLE = [
  { name: 'web', protocol: 'tcp', dst: '10.77.2.0/24', dstPort: '8000-8099' },
  { name: 'any80', protocol: 'tcp', dstPort: '8000-8100' },
  { name: 'dns', protocol: 'udp', dst: '10.77.2.2/32', dstPort: 5300 },
  { name: 'udprange', protocol: 'udp', dstPort: '5300-5400' },
];

/** A TCP and UDP server in `server` that answers "server <port>" (what un-intercepted traffic reaches). */
const SERVER = `
const net = require('node:net'), dgram = require('node:dgram');
for (const p of [7000, 8050, 8100]) net.createServer((s) => { s.on('error', () => {}); s.end('server ' + p + '\\n'); }).listen(p, '10.77.2.2');
for (const p of [5300, 5301, 7001]) { const u = dgram.createSocket('udp4'); u.on('message', (m, r) => u.send('server ' + p, r.port, r.address)); u.bind(p, '10.77.2.2'); }
setTimeout(() => console.log('listening'), 200);
`;

const TCP_CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const s = net.connect(Number(port), host); let out = '';
s.setTimeout(5000, () => { console.log('timeout'); process.exit(2); });
s.on('data', (d) => out += d); s.on('end', () => { process.stdout.write(out); process.exit(0); });
s.on('error', (e) => { console.log('error ' + e.code); process.exit(3); });
`;

const UDP_CLIENT = `
const dgram = require('node:dgram');
const [host, port, text] = process.argv.slice(1);
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => { console.log(JSON.stringify({ reply: m.toString(), from: r.address + ':' + r.port })); process.exit(0); });
setTimeout(() => { console.log('timeout'); process.exit(2); }, 5000);
u.send(text, Number(port), host);
`;

async function topology(): Promise<Topology> {
  return createTopology({
    namespaces: ['client', 'gw', 'server'],
    links: [
      { a: { ns: 'client', ipv4: '10.77.1.2/24' }, b: { ns: 'gw', ipv4: '10.77.1.1/24' } },
      { a: { ns: 'gw', ipv4: '10.77.2.1/24' }, b: { ns: 'server', ipv4: '10.77.2.2/24' } },
    ],
    forwarding: ['gw'],
    routes: [
      { ns: 'client', args: ['default', 'via', '10.77.1.1'] },
      { ns: 'server', args: ['default', 'via', '10.77.2.1'] },
    ],
  });
}

function startGateway(topo: Topology, hooks = { prerouting: true, output: false }): NsProcess {
  const cfg = { table: TABLE, instance: INSTANCE, hooks, mark: MARK };
  return topo.runNode('gw', GATEWAY, [JSON.stringify(cfg)], { stdin: 'pipe' });
}

async function ready(gw: NsProcess): Promise<Record<string, number>> {
  const line = await gw.waitForLine(/"event":"(ready|error)"/, { timeoutMs: 20_000 });
  const ev = JSON.parse(line) as { event: string; ports: Record<string, number>; message?: string };
  assert.equal(ev.event, 'ready', `gateway failed to start: ${ev.message}`);
  return ev.ports;
}

const tcp = (topo: Topology, host: string, port: number): Promise<string> =>
  topo.exec('client', process.execPath, ['-e', TCP_CLIENT, host, String(port)]).then((s) => s.trim());

async function udp(topo: Topology, host: string, port: number, text: string): Promise<{ reply: string; from: string }> {
  const out = (await topo.exec('client', process.execPath, ['-e', UDP_CLIENT, host, String(port), text])).trim();
  assert.notEqual(out, 'timeout', `no UDP reply from ${host}:${port}`);
  return JSON.parse(out) as { reply: string; from: string };
}

/** Everything of Sluice's in the gateway namespace, as text; empty when nothing is left. */
async function leftovers(topo: Topology): Promise<string> {
  // Every nf_tables table (no table = empty ruleset), read over netlink: no nft tool needed.
  const ruleset = await nftTables(topo, 'gw');
  const rules = [...(await topo.ip('gw', ['-4', 'rule'])).split('\n'), ...(await topo.ip('gw', ['-6', 'rule'])).split('\n')].filter((l) => /fwmark/.test(l));
  const routes = [
    ...(await topo.ip('gw', ['-4', 'route', 'show', 'table', 'all'])).split('\n'),
    ...(await topo.ip('gw', ['-6', 'route', 'show', 'table', 'all'])).split('\n'),
  ].filter((l) => /^local (default|::\/0)|table 13975/.test(l));
  return [ruleset, ...rules, ...routes].filter(Boolean).join('\n');
}

async function closeGateway(gw: NsProcess): Promise<void> {
  gw.writeLine('close');
  const line = await gw.waitForLine(/"event":"(closed|error)"/, { timeoutMs: 10_000 });
  assert.match(line, /"closed"/, line);
  await gw.waitExit(10_000);
}

test('TCP: table flows reach the interceptor with their original destination, first match wins, others pass', { skip, timeout: 90_000 }, async () => {
  const topo = await topology();
  try {
    const server = topo.spawn('server', process.execPath, ['-e', SERVER]);
    await server.waitForLine(/listening/);
    const gw = startGateway(topo);
    const ports = await ready(gw);
    assert.equal(Object.keys(ports).length, 4);
    assert.notEqual(ports['0'], ports['1'], 'each entry has its own listener port');

    // 8050 matches both 'web' and 'any80': the earlier one wins.
    assert.equal(await tcp(topo, '10.77.2.2', 8050), 'intercepted web 10.77.2.2:8050');
    // 8100 is outside 'web' but inside 'any80'.
    assert.equal(await tcp(topo, '10.77.2.2', 8100), 'intercepted any80 10.77.2.2:8100');
    // An address with no host behind it: the interceptor answers anyway (it is the flow's endpoint now).
    assert.equal(await tcp(topo, '10.77.9.9', 8000), 'intercepted any80 10.77.9.9:8000');
    // Not in the table: the real server answers.
    assert.equal(await tcp(topo, '10.77.2.2', 7000), 'server 7000');

    const events = gw
      .jsonLines<{ event: string; entry: string; src: { address: string }; dst: { address: string; port: number } }>()
      .filter((e) => e.event === 'tcp');
    assert.deepEqual(
      events.map((e) => [e.entry, e.src.address, `${e.dst.address}:${e.dst.port}`]),
      [
        ['web', '10.77.1.2', '10.77.2.2:8050'],
        ['any80', '10.77.1.2', '10.77.2.2:8100'],
        ['any80', '10.77.1.2', '10.77.9.9:8000'],
      ],
    );
    await closeGateway(gw);
    // With the rules gone, the same flow reaches the server.
    assert.equal(await tcp(topo, '10.77.2.2', 8050), 'server 8050');
    assert.equal(await leftovers(topo), '');
  } finally {
    await topo.destroy();
  }
});

test('UDP: table datagrams arrive with their original destination and replies come from it', { skip, timeout: 90_000 }, async () => {
  const topo = await topology();
  try {
    const server = topo.spawn('server', process.execPath, ['-e', SERVER]);
    await server.waitForLine(/listening/);
    const gw = startGateway(topo);
    await ready(gw);

    assert.deepEqual(await udp(topo, '10.77.2.2', 5300, 'q1'), { reply: 'reply dns q1', from: '10.77.2.2:5300' });
    // 5301 matches only the later entry.
    assert.deepEqual(await udp(topo, '10.77.2.2', 5301, 'q2'), { reply: 'reply udprange q2', from: '10.77.2.2:5301' });
    // A destination no host has: the reply still comes "from" it.
    assert.deepEqual(await udp(topo, '10.77.9.9', 5300, 'q3'), { reply: 'reply udprange q3', from: '10.77.9.9:5300' });
    // Not in the table: the real server answers.
    assert.deepEqual(await udp(topo, '10.77.2.2', 7001, 'q4'), { reply: 'server 7001', from: '10.77.2.2:7001' });

    const events = gw
      .jsonLines<{ event: string; entry: string; src: { address: string }; dst: { address: string; port: number } }>()
      .filter((e) => e.event === 'udp');
    assert.deepEqual(
      events.map((e) => [e.entry, e.src.address, `${e.dst.address}:${e.dst.port}`]),
      [
        ['dns', '10.77.1.2', '10.77.2.2:5300'],
        ['udprange', '10.77.1.2', '10.77.2.2:5301'],
        ['udprange', '10.77.1.2', '10.77.9.9:5300'],
      ],
    );
    await closeGateway(gw);
    assert.deepEqual(await udp(topo, '10.77.2.2', 5300, 'q5'), { reply: 'server 5300', from: '10.77.2.2:5300' });
    assert.equal(await leftovers(topo), '');
  } finally {
    await topo.destroy();
  }
});

test('crash: after SIGKILL a new start cleans up and intercepts; its close leaves nothing', { skip, timeout: 90_000 }, async () => {
  const topo = await topology();
  try {
    const server = topo.spawn('server', process.execPath, ['-e', SERVER]);
    await server.waitForLine(/listening/);
    const first = startGateway(topo, { prerouting: true, output: true });
    await ready(first);
    assert.match(await leftovers(topo), /sluice_tpo_nstest/);
    first.signal('SIGKILL');
    await first.waitExit(10_000);
    // The owned table died with its socket; the policy routing has no owner and stays.
    const afterKill = await leftovers(topo);
    assert.doesNotMatch(afterKill, /sluice_tpo_nstest/);
    assert.match(afterKill, /fwmark/);

    const second = startGateway(topo, { prerouting: true, output: true });
    await ready(second);
    const running = await leftovers(topo);
    // One rule per family ('udprange' has no prefix: IPv4 and IPv6), not a stale copy besides.
    assert.equal(running.split('\n').filter((l) => /fwmark/.test(l)).length, 2, `one ip rule per family:\n${running}`);
    assert.deepEqual(await udp(topo, '10.77.2.2', 5300, 'again'), { reply: 'reply dns again', from: '10.77.2.2:5300' });
    assert.equal(await tcp(topo, '10.77.2.2', 8050), 'intercepted web 10.77.2.2:8050');
    await closeGateway(second);
    assert.equal(await leftovers(topo), '');
  } finally {
    await topo.destroy();
  }
});

test("output hook: the gateway host's own flows are intercepted unless they carry the own mark", { skip, timeout: 90_000 }, async () => {
  const topo = await topology();
  try {
    const server = topo.spawn('server', process.execPath, ['-e', SERVER]);
    await server.waitForLine(/listening/);
    const gw = startGateway(topo, { prerouting: false, output: true });
    await ready(gw);
    const local = async (kind: 'tcp' | 'udp', port: number, mark: number): Promise<string> =>
      (await topo.exec('gw', process.execPath, ['--import', 'tsx', LOCAL_CLIENT, kind, '10.77.2.2', String(port), String(mark)])).trim();
    assert.equal(await local('tcp', 8050, 0), 'intercepted web 10.77.2.2:8050');
    assert.equal(await local('tcp', 8050, MARK), 'server 8050');
    // UDP from the host: out_udp marks it, policy routing loops it over lo, pre_udp tproxies it.
    assert.deepEqual(JSON.parse(await local('udp', 5300, 0)), { reply: 'reply dns local', from: '10.77.2.2:5300' });
    assert.deepEqual(JSON.parse(await local('udp', 5300, MARK)), { reply: 'server 5300', from: '10.77.2.2:5300' });
    // Prerouting is off: a routed client's flow is not intercepted.
    assert.equal(await tcp(topo, '10.77.2.2', 8050), 'server 8050');
    assert.deepEqual(await udp(topo, '10.77.2.2', 5300, 'routed'), { reply: 'server 5300', from: '10.77.2.2:5300' });
    await closeGateway(gw);
    assert.equal(await leftovers(topo), '');
  } finally {
    await topo.destroy();
  }
});

test('SIGTERM removes the rules through the exit handler', { skip, timeout: 60_000 }, async () => {
  const topo = await topology();
  try {
    const gw = startGateway(topo);
    await ready(gw);
    gw.signal('SIGTERM');
    const exit = await gw.waitExit(10_000);
    assert.equal(exit.signal, 'SIGTERM');
    assert.equal(await leftovers(topo), '');
  } finally {
    await topo.destroy();
  }
});
