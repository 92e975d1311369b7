/**
 * What the kernel program mirrors of the host, kept in step with it: this
 * host's addresses (the `local_addrs` map; a subscriber there is "local")
 * and, per interface it hooks at ingress, the settings of the stack's source
 * checks (rp_filter and friends, the `ifcfg` map, read by host-config.ts).
 * The plane refreshes it at start and then on a timer.
 */
import { networkInterfaces } from 'node:os';
import { isIPv4 } from 'node:net';
import { mapDelete, mapUpdate } from '../../sys/bpf.js';
import { interfacesWithIpv4, readInterfaceConfig } from './host-config.js';
import { hexKey } from './placement.js';
import { addr16, ifcfgKey, ifcfgValue } from './layout.js';
import type { Attachment } from './attach.js';

export class HostMirror {
  readonly #localAddrsFd: number;
  readonly #ifcfgFd: number;
  readonly #attachments: readonly Attachment[];
  #local = new Set<string>();
  /** ifcfg entries as last written, by ifindex (hex of the value). */
  readonly #ifcfg = new Map<number, string>();

  constructor(localAddrsFd: number, ifcfgFd: number, attachments: readonly Attachment[]) {
    this.#localAddrsFd = localAddrsFd;
    this.#ifcfgFd = ifcfgFd;
    this.#attachments = attachments;
  }

  /** Keeps `local_addrs` in step with the host's addresses; true when they changed (every subscriber's "local" mark must be redone). */
  refreshLocal(): boolean {
    const now = new Set<string>();
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) now.add(hexKey(addr16(a.address)));
    }
    const same = now.size === this.#local.size && [...now].every((k) => this.#local.has(k));
    if (same) return false;
    const fd = this.#localAddrsFd;
    const one = new Uint8Array(4);
    one[0] = 1;
    for (const k of now) if (!this.#local.has(k)) mapUpdate(fd, Buffer.from(k, 'hex'), one, 0, 'local_addrs');
    for (const k of this.#local) if (!now.has(k)) mapDelete(fd, Buffer.from(k, 'hex'), 'local_addrs');
    this.#local = now;
    return true;
  }

  /** Keeps the `ifcfg` entry of every interface hooked at ingress in step with its settings. */
  refreshInterfaces(): void {
    const fd = this.#ifcfgFd;
    const withIpv4 = interfacesWithIpv4();
    for (const a of this.#attachments) {
      if (a.hook.direction !== 'ingress') continue;
      const { ifindex, name } = a.hook.iface;
      const cfg = readInterfaceConfig(name, withIpv4);
      const hex = cfg ? hexKey(ifcfgValue(cfg)) : '';
      if (this.#ifcfg.get(ifindex) === hex) continue;
      // No entry: the program punts that interface's datagrams to the stack.
      if (cfg) mapUpdate(fd, ifcfgKey(ifindex), ifcfgValue(cfg), 0, 'ifcfg');
      else mapDelete(fd, ifcfgKey(ifindex), 'ifcfg');
      this.#ifcfg.set(ifindex, hex);
    }
  }

  /** Whether `address` is this host's (loopback included), as of the last refreshLocal. */
  isLocal(address: string): boolean {
    const b = addr16(address);
    if (isIPv4(address) && b[12] === 127) return true;
    if (address === '::1') return true;
    return this.#local.has(hexKey(b));
  }
}
