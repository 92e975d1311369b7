/**
 * Two TPO gateways across an emulated lossy WAN, in network namespaces
 * (root, Linux): client — gwa — WAN — gwb — server. The WAN is the
 * project's IP-level emulator (harness/bin/ip-wan-emu.ts: delay, random
 * loss, a rate limit), the gateways are `sluice tpo` in transparent mode,
 * and a file goes from the client to the server's own address, first
 * straight across the WAN (TCP) and then through the gateways; both
 * copies are checked by sha256. (`npm run bench -- --suites tpo-wan`
 * compares with CUBIC, BBR and kcptun properly.)
 *
 *   sudo node --import tsx examples/tpo-wan-demo.ts [--file PATH] [--loss 1] [--rtt-ms 100] [--rate-mbit 50]
 *
 * Everything lives in namespaces this script creates and removes (also on
 * Ctrl-C).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { rootSkipReason } from '../harness/netns/netns.js';
import { WAN_ADDR, createWanTopology } from '../harness/wan/topology.js';
import { startGatewayPair } from '../harness/tpo/gateway-pair.js';

const { values } = parseArgs({
  options: {
    file: { type: 'string', default: 'node_modules/typescript/lib/typescript.js' },
    loss: { type: 'string', default: '1' },
    'rtt-ms': { type: 'string', default: '100' },
    'rate-mbit': { type: 'string', default: '50' },
  },
});
const why = rootSkipReason();
if (why) {
  console.error(`tpo-wan-demo: ${why}`);
  process.exit(2);
}
const data = readFileSync(values.file!);
const want = createHash('sha256').update(data).digest('hex');
const loss = Number(values.loss) / 100;
const oneWay = Number(values['rtt-ms']) / 2;
const rate = Number(values['rate-mbit']) * 1e6;

// The receiver: counts and hashes one connection, prints it, exits. The sender: writes the file and closes.
const RECEIVER = `const h = require('node:crypto').createHash('sha256'); let n = 0, t0;
require('node:net').createServer((s) => { s.on('data', (d) => { t0 ??= Date.now(); n += d.length; h.update(d); });
  s.on('end', () => { console.log(JSON.stringify({ bytes: n, sha256: h.digest('hex'), ms: Date.now() - t0 })); process.exit(0); }); })
  .listen(5400, '0.0.0.0', () => console.log('ready'));`;
const SENDER = `const fs = require('node:fs'); const s = require('node:net').connect(5400, '${WAN_ADDR.server}', () => s.end(fs.readFileSync(process.argv[1])));
s.on('error', (e) => { console.error(e.message); process.exit(1); });`;

const wt = await createWanTopology();
try {
  await wt.startEmulator({ common: { delayMs: oneWay, rateBps: rate, loss }, seed: 1 });
  console.log(
    `WAN: ${values['rate-mbit']} Mbit/s, ${values['rtt-ms']} ms RTT, ${values.loss} % random loss each way; file ${values.file} (${(data.length / 1e6).toFixed(1)} MB, sha256 ${want.slice(0, 16)}…)`,
  );
  const run = async (label: string): Promise<void> => {
    const rx = wt.topo.spawn('server', process.execPath, ['-e', RECEIVER]);
    await rx.waitForLine(/ready/, { timeoutMs: 10_000 });
    const t0 = Date.now();
    const tx = wt.topo.spawn('client', process.execPath, ['-e', SENDER, values.file!]);
    const done = await rx.waitExit(600_000);
    await tx.waitExit(10_000);
    const r = JSON.parse(rx.stdout().trim().split('\n').pop() ?? '{}') as { bytes: number; sha256: string };
    const s = (Date.now() - t0) / 1000;
    const ok = done.code === 0 && r.sha256 === want;
    console.log(`${label}: ${r.bytes} bytes in ${s.toFixed(1)} s = ${((r.bytes * 8) / s / 1e6).toFixed(2)} Mbit/s, sha256 ${ok ? 'matches' : 'DIFFERS'}`);
    if (!ok) process.exitCode = 1;
  };
  const cc = await wt
    .setCongestionControl('cubic', ['client', 'server'])
    .then(() => 'CUBIC')
    // Outside the root namespace the kernel takes only algorithms in the global allowed list (npm run bench sets CUBIC per socket instead):
    // then the namespace keeps the host's default, named here as every benchmark names its algorithm.
    .catch(async () => {
      const alg = (await wt.topo.exec('client', 'sysctl', ['-n', 'net.ipv4.tcp_congestion_control']).catch(() => 'unknown')).trim();
      return `${alg.toUpperCase()}, the host's default: CUBIC is not in net.ipv4.tcp_allowed_congestion_control`;
    });
  await run(`direct TCP across the WAN (${cc})`);
  const pair = await startGatewayPair(wt, { mode: 'transparent', tcpTarget: 5400 });
  try {
    await run('through the Sluice gateways');
    const st = await pair.status('a');
    console.log(
      `gateway gwa: peer ${st.peers[0]!.name} srtt ${st.peers[0]!.srttMs} ms, bandwidth estimate ${st.peers[0]!.bandwidthMbit} Mbit/s, ${st.peers[0]!.retransmissions} retransmissions, ${st.counters.flowsOpened} flow(s)`,
    );
  } finally {
    await pair.stop();
  }
} finally {
  await wt.destroy();
}
