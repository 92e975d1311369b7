/**
 * Transparent interception for the gateway (issue #7): the nf_tables rules
 * of src/tpo/intercept/ (REDIRECT for TCP, TPROXY for UDP, one table owned
 * by this process and removed on close, after a crash at the next start)
 * presented as the gateway's Interception. Replies to UDP clients leave
 * from the address they sent to, so the applications see their peer's
 * address, not the gateway's. ICMP entries' echo requests are answered by
 * this host (an nf_tables redirect; the kernel replies from the pinged
 * address).
 */
import { EventEmitter } from 'node:events';
import type { InterceptRule } from '../config/intercept-rules.js';
import { startTransparentInterception, type TransparentInterceptor } from '../intercept/tproxy-interceptor.js';
import { resetSocket, type Interception, type TcpIntercepted, type UdpIntercepted } from '../intercept/interception.js';

/** SO_MARK of Sluice's own sockets unless the config says otherwise ("SL" in ASCII, low bits 1). */
export const DEFAULT_MARK = 0x534c0001;

export interface TransparentInterceptionOptions {
  readonly table: readonly InterceptRule[];
  readonly instance: string;
  readonly hooks: readonly ('prerouting' | 'output')[];
  readonly mark: number;
}

export class TransparentInterception extends EventEmitter implements Interception {
  readonly #options: TransparentInterceptionOptions;
  #ic: TransparentInterceptor | undefined;

  /** Nothing is intercepted until listen(): attach the consumer first. */
  constructor(options: TransparentInterceptionOptions) {
    super();
    this.#options = options;
  }

  /** Constructs and installs at once (a consumer attached later misses, and resets, what arrives in between). */
  static async start(options: TransparentInterceptionOptions): Promise<TransparentInterception> {
    const t = new TransparentInterception(options);
    await t.listen();
    return t;
  }

  async listen(): Promise<void> {
    const o = this.#options;
    const ic = await startTransparentInterception({
      table: o.table,
      // nf_tables names: [a-z0-9_] only.
      instance: o.instance
        .toLowerCase()
        .replace(/[^a-z0-9_]/g, '_')
        .slice(0, 32),
      hooks: { prerouting: o.hooks.includes('prerouting'), output: o.hooks.includes('output') },
      mark: o.mark,
      // ICMP echo of table entries is answered here (LAN round trip); carrying it across is not built.
      icmp: 'answer',
    });
    this.#ic = ic;
    ic.on('tcp', (socket, info) => {
      // No consumer: a reset now, not a connection left waiting in a socket nobody reads.
      if (
        !this.emit('tcp', {
          socket,
          entry: info.entry,
          src: { address: info.src.address, port: info.src.port },
          dst: { address: info.dst.address, port: info.dst.port },
        } satisfies TcpIntercepted)
      ) {
        ic.stats.tcpRejected++;
        resetSocket(socket);
      }
    });
    ic.on('udp', (d) => {
      const reply = (data: Uint8Array) => {
        ic.sendUdp(d.dst, d.src, data);
      };
      this.emit('udp', {
        entry: d.entry,
        src: { address: d.src.address, port: d.src.port },
        dst: { address: d.dst.address, port: d.dst.port },
        data: d.data,
        reply,
      } satisfies UdpIntercepted);
    });
    // The UDP receive thread failed: the owner hears it ('error'); with no listener it is a warning, never an uncaught 'error'.
    ic.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
      else process.emitWarning(`transparent interception: ${err.message}`);
    });
  }

  get stats(): { refused: number } {
    return { refused: this.#ic?.stats.tcpRejected ?? 0 };
  }

  get details(): TransparentInterceptor['stats'] | undefined {
    return this.#ic?.stats;
  }

  listenAddresses(): { entry: string; protocol: string; address: string; port: number }[] {
    return [...(this.#ic?.ports ?? [])].map(([index, port]) => ({ entry: `#${index}`, protocol: 'transparent', address: 'any', port }));
  }

  /**
   * Deletes the nf_tables table and the policy routing now, synchronously:
   * for the owner's process 'exit' handler (close() does it too). Returns
   * the errors it met.
   */
  removeKernelStateSync(): Error[] {
    return this.#ic?.removeKernelStateSync() ?? [];
  }

  async close(): Promise<void> {
    await this.#ic?.close();
  }
}
