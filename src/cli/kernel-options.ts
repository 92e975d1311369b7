/** The kernel-tier options `sluice relay` and `sluice run` share: one definition each, so their help cannot drift apart. */
import { Option } from 'commander';

export const pinOption = () =>
  new Option(
    '--pin [dir]',
    'kernel tier: pin state in bpffs (default /sys/fs/bpf/sluice) so forwarding goes on while sluice is stopped; a later --pin run adopts it, `sluice detach` removes it',
  );
export const kernelHookOption = () =>
  new Option(
    '--kernel-hook <hook>',
    "kernel tier: where redirect flows run: 'tcx' (default), 'xdp' (in the driver; generic mode where it has none), 'auto' (native XDP only)",
  ).choices(['tcx', 'xdp', 'auto']);
