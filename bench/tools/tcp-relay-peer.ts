/**
 * Sluice's tcp-redirect as a bench peer (bench/lib/tcp-suite.ts): the
 * library's TcpRelay with a chosen path, so both the splice and the
 * user-space joiner can be measured (the CLI always picks 'auto').
 *
 *   tcp-relay-peer.ts sockmap|splice|userspace TO_PORT
 *
 * Listens on 127.0.0.1 (a port the OS picks), prints
 * {"event":"ready","port":P,"mode":M}, and on SIGTERM closes and prints the
 * relay's last counters as {"event":"final",...}.
 */
import { TcpRelay } from '../../src/index.js';

const [mode, toPort] = process.argv.slice(2);
if ((mode !== 'sockmap' && mode !== 'splice' && mode !== 'userspace') || !/^\d+$/.test(toPort ?? '')) {
  process.stderr.write('usage: tcp-relay-peer.ts sockmap|splice|userspace TO_PORT\n');
  process.exit(2);
}
const relay = await TcpRelay.start({
  type: 'tcp-redirect',
  listen: 'tcp://127.0.0.1:0',
  to: `tcp://127.0.0.1:${toPort}`,
  allow: '127.0.0.1',
  mode,
});
process.stdout.write(`${JSON.stringify({ event: 'ready', port: Number(/:(\d+)$/.exec(relay.listen)![1]), mode: relay.mode })}\n`);
process.once('SIGTERM', () => {
  void relay.close().then((s) => {
    process.stdout.write(`${JSON.stringify({ event: 'final', ...s })}\n`);
    process.exit(0);
  });
});
