/**
 * Transparent interception for the gateway (issue #7): the nf_tables rules
 * of src/tpo/intercept/ (REDIRECT for TCP, TPROXY for UDP, one table owned
 * by this process and removed on exit, after a crash at the next start)
 * presented as the gateway's Interception. Replies to UDP clients leave
 * from the address they sent to, so the applications see their peer's
 * address, not the gateway's. ICMP entries' echo requests are answered by
 * this host (an nf_tables redirect; the kernel replies from the pinged
 * address).
 */
import { EventEmitter } from 'node:events';
import type { FlowEntry } from '../flow-table.js';
import { startTransparentInterception, type TransparentInterceptor } from '../intercept/transparent.js';
import type { Interception, TcpIntercepted, UdpIntercepted } from './explicit.js';

/** SO_MARK of Sluice's own sockets unless the config says otherwise ("SL" in ASCII, low bits 1). */
export const DEFAULT_MARK = 0x534c0001;

export class TransparentInterception extends EventEmitter implements Interception {
  readonly #ic: TransparentInterceptor;

  private constructor(ic: TransparentInterceptor) {
    super();
    this.#ic = ic;
    ic.on('tcp', (socket, info) => this.emit('tcp', { socket, entry: info.entry, src: { address: info.src.address, port: info.src.port }, dst: { address: info.dst.address, port: info.dst.port } } satisfies TcpIntercepted));
    ic.on('udp', (d) => {
      const reply = (data: Uint8Array) => {
        ic.sendUdp(d.dst, d.src, data);
      };
      this.emit('udp', { entry: d.entry, src: { address: d.src.address, port: d.src.port }, dst: { address: d.dst.address, port: d.dst.port }, data: d.data, reply } satisfies UdpIntercepted);
    });
    ic.on('error', (err) => this.emit('error', err));
  }

  static async start(options: { table: readonly FlowEntry[]; instance: string; hooks: readonly ('prerouting' | 'output')[]; mark: number }): Promise<TransparentInterception> {
    const ic = await startTransparentInterception({
      table: options.table,
      // nf_tables names: [a-z0-9_] only.
      instance: options.instance.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 32),
      hooks: { prerouting: options.hooks.includes('prerouting'), output: options.hooks.includes('output') },
      mark: options.mark,
      // ICMP echo of table entries is answered here (LAN round trip); carrying it across is not built.
      icmp: 'answer',
    });
    return new TransparentInterception(ic);
  }

  get stats(): { refused: number } {
    return { refused: this.#ic.stats.tcpRejected };
  }

  get details(): TransparentInterceptor['stats'] {
    return this.#ic.stats;
  }

  listenAddresses(): { entry: string; protocol: string; address: string; port: number }[] {
    return [...this.#ic.ports].map(([index, port]) => ({ entry: `#${index}`, protocol: 'transparent', address: 'any', port }));
  }

  close(): Promise<void> {
    return this.#ic.close();
  }
}
