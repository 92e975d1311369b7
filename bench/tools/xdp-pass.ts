/**
 * Holds a two-instruction XDP program (native mode) on one interface while it
 * runs, for the xdp suite (bench/lib/xdp-suite.ts). With --drop it returns
 * XDP_DROP: the suite's sink, which the veth counts (ethtool -S:
 * rx_queue_0_xdp_drops) at the least cost a receiver can have. Without, it
 * returns XDP_PASS, for the tcx variant:
 * on a veth an XDP program gives the receive side a NAPI instance (so the
 * relay's receive runs in the same pinned NAPI thread as with kernelHook
 * 'xdp') and elides GRO (one skb per datagram, as at XDP), at the cost of
 * running two instructions per frame.
 *
 *   --ifname IF [--drop]
 *
 * stdout: {"event":"ready","ifindex":N} once attached. Detaches (closes the
 * link) and exits 0 when stdin closes or on SIGTERM/SIGINT.
 */
import { readFileSync } from 'node:fs';
import { BPF_PROG_TYPE_XDP, BPF_XDP, closeFd, progLoad, xdpLinkCreate } from '../../src/sys/bpf.js';

const at = process.argv.indexOf('--ifname');
const ifname = at >= 0 ? process.argv[at + 1] : undefined;
if (!ifname) {
  process.stderr.write('xdp-pass: --ifname is required\n');
  process.exit(2);
}
const fds: number[] = [];
try {
  const ifindex = Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim());
  // r0 = XDP_PASS (2) or XDP_DROP (1); exit
  const verdict = process.argv.includes('--drop') ? 1 : 2;
  const insns = new Uint8Array([0xb7, 0x00, 0, 0, verdict, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
  fds.push(
    progLoad({
      type: BPF_PROG_TYPE_XDP,
      insns,
      license: 'Dual MIT/GPL',
      name: verdict === 1 ? 'bench_xdp_drop' : 'bench_xdp_pass',
      expectedAttachType: BPF_XDP,
    }),
  );
  fds.push(xdpLinkCreate(fds[0]!, ifindex, 'native', `xdp pass on ${ifname}`));
  process.stdout.write(`${JSON.stringify({ event: 'ready', ifindex })}\n`);
} catch (err) {
  process.stderr.write(`xdp-pass: ${(err as Error).message}\n`);
  process.exit(1);
}
const shutdown = (): void => {
  for (const fd of fds.reverse()) closeFd(fd);
  process.exit(0);
};
process.stdin.on('end', shutdown);
process.stdin.resume();
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
