/**
 * TpoGateway ('sluice/tpo'): a TPO gateway as a library object. It puts
 * together what `sluice tpo` runs — the interception the config asks for
 * (explicit listeners, or transparent nf_tables rules), the gateway with
 * its peer links, and the control socket `sluice status` reads — owns
 * them, and closes them in order. Its events are typed (tpo-events.ts);
 * a listener that throws is reported as 'listenererror' and never reaches
 * the gateway's sockets or timers.
 *
 * It installs no process handlers: what SIGINT, SIGTERM or the process's
 * exit mean is its owner's choice (src/cli/tpo.ts for `sluice tpo`). An
 * owner of transparent interception that may exit without close() calls
 * removeKernelStateSync() from its own 'exit' handler; the kernel removes
 * the nf_tables table by itself when the process dies, and the next start
 * removes the policy routing a crash left.
 */
import { TypedEmitter } from '../events.js';
import { defaultControlPath, startControlServer, type ControlServer } from './control-socket.js';
import type { TpoConfig } from './config/config.js';
import { loadTpoConfig } from './config/load.js';
import { Gateway } from './gateway/gateway.js';
import type { GatewayStatus } from './gateway/status.js';
import { DEFAULT_MARK, TransparentInterception } from './gateway/transparent.js';
import { ExplicitInterception } from './intercept/explicit.js';
import type { Interception } from './intercept/interception.js';
import { flowFailure, flowInfo, HandshakeFailureCoalescer, type TpoGatewayEvents } from './tpo-events.js';

export interface TpoGatewayOptions {
  /** A parsed config, or the path of a YAML/JSON config file (loadTpoConfig: key files relative to it). */
  readonly config: TpoConfig | string;
  /** Peer-link I/O: 'auto' (default: batched where the host has it), 'batched', 'portable'. */
  readonly io?: 'auto' | 'batched' | 'portable';
  /** 'config' (default): the config's table in its intercept.mode; 'none': no interception, destination side only. */
  readonly interception?: 'config' | 'none';
  /**
   * The control socket `sluice status` reads. true (default): at the
   * config's `control`, else defaultControlPath(name) in a private
   * directory; a path of your own; false: none.
   */
  readonly control?: boolean | { readonly path: string; readonly privateDir?: boolean };
}

export type TpoGatewayStatus = GatewayStatus;

export class TpoGateway extends TypedEmitter<TpoGatewayEvents> {
  readonly config: TpoConfig;
  readonly #gateway: Gateway;
  readonly #interception: Interception | undefined;
  readonly #transparent: TransparentInterception | undefined;
  #control: ControlServer | undefined;
  #closing: Promise<void> | undefined;
  #fault: Error | undefined;
  #started = false;
  readonly #handshakes = new HandshakeFailureCoalescer();

  private constructor(config: TpoConfig, gateway: Gateway, interception: Interception | undefined) {
    super();
    this.config = config;
    this.#gateway = gateway;
    this.#interception = interception;
    this.#transparent = interception instanceof TransparentInterception ? interception : undefined;
    gateway.on('peer-up', (peer) => this.emit('peerup', peer));
    gateway.on('peer-down', (peer) => this.emit('peerdown', peer));
    gateway.on('fault', (err) => this.#onFault(err));
    interception?.on('error', (err: Error) => this.#onFault(err));
    // Each event is built only when someone listens: hostile traffic must not cost allocations for nothing.
    gateway.on('flow-open', (flow) => {
      if (this.listenerCount('flowopen') > 0) this.emit('flowopen', flowInfo(flow));
    });
    gateway.on('flow-fail', (reason, role, tuple, peer) => {
      if (this.listenerCount('flowfail') > 0) this.emit('flowfail', flowFailure(reason, role, tuple, peer));
    });
    gateway.on('flow-error', (error) => {
      if (this.listenerCount('flowfail') > 0) this.emit('flowfail', { reason: 'error', error });
    });
    gateway.on('handshake-failure', (peer, reason, from) => {
      if (this.listenerCount('handshakefailure') === 0) return;
      const event = this.#handshakes.add(peer, reason, from);
      if (event) this.emit('handshakefailure', event);
    });
  }

  /**
   * Starts a gateway as `sluice tpo` does: the interception is made, the
   * gateway starts and subscribes to it, then the interception listens
   * (no connection exists without an owner), then the control socket
   * opens. On a failure everything started is closed before the error
   * propagates (a TpoConfigError for the config, a ControlSocketError for
   * the control socket's path, a SluiceError for a listener or the peer
   * port).
   */
  static async start(options: TpoGatewayOptions): Promise<TpoGateway> {
    const config = typeof options.config === 'string' ? loadTpoConfig(options.config) : options.config;
    const transparent = config.intercept.mode === 'transparent';
    const entries = options.interception === 'none' ? [] : config.table;
    const interception: Interception | undefined = !entries.length
      ? undefined
      : transparent
        ? new TransparentInterception({ table: entries, instance: config.name, hooks: config.intercept.hooks, mark: DEFAULT_MARK })
        : new ExplicitInterception(entries);
    const gateway = await Gateway.start(config, {
      ...(interception ? { interception, interceptionName: config.intercept.mode } : {}),
      ...(options.io ? { io: options.io } : {}),
      // In transparent mode the gateway's own sockets carry the mark the rules skip.
      ...(transparent && options.interception !== 'none' ? { mark: DEFAULT_MARK } : {}),
    });
    const gw = new TpoGateway(config, gateway, interception);
    try {
      // A failed listen has closed the interception's own listeners and rules already.
      await interception?.listen();
      const control = options.control ?? true;
      if (control !== false) {
        const at = control === true ? { path: config.control ?? defaultControlPath(config.name), privateDir: config.control === undefined } : control;
        // The default location is a private directory of this user; a configured one is the operator's choice.
        gw.#control = await startControlServer(at.path, () => gateway.status(), { privateDir: at.privateDir ?? false });
      }
    } catch (err) {
      // What started is closed (the gateway, then the interception); the start's error is the one that matters.
      await gw.close().catch(() => undefined);
      throw err;
    }
    gw.#started = true;
    return gw;
  }

  get name(): string {
    return this.config.name;
  }

  /** close() was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** The UDP address the peer links use. */
  address(): { address: string; port: number } {
    return this.#gateway.address();
  }

  /** Where the control socket listens (undefined: none). */
  get controlPath(): string | undefined {
    return this.#control?.path;
  }

  /** Peers, flows, the flow table, drops and counters now: the JSON `sluice status --json` prints. */
  status(): TpoGatewayStatus {
    return this.#gateway.status();
  }

  /**
   * Deletes the transparent interception's nf_tables table and policy
   * routing now, synchronously (nothing to do in explicit mode): for the
   * owner's process 'exit' handler, or to let new flows bypass the gateway
   * at once while it closes. Returns the errors it met.
   */
  removeKernelStateSync(): Error[] {
    return this.#transparent?.removeKernelStateSync() ?? [];
  }

  /**
   * Resets every flow (the applications must not think their data
   * arrived), says goodbye to the peers (unless `abrupt`, as a crash
   * would), closes the peer port, the interception (its rules and routes
   * too) and the control socket, then emits 'close'. Idempotent: every
   * call returns the first call's promise. It rejects with the first
   * error met, after trying to close everything.
   */
  close(options: { abrupt?: boolean } = {}): Promise<void> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async #close(options: { abrupt?: boolean }): Promise<void> {
    const errors: unknown[] = [];
    const step = async (close: (() => Promise<void>) | undefined) => {
      try {
        await close?.();
      } catch (err) {
        errors.push(err);
      }
    };
    await step(() => this.#gateway.close(options));
    await step(this.#interception && (() => this.#interception!.close()));
    await step(this.#control && (() => this.#control!.close()));
    this.emit('close');
    if (errors.length) throw errors[0];
  }

  /** The first 'fault', also one that came while start() was still running (before anyone could listen). */
  get fault(): Error | undefined {
    return this.#fault;
  }

  /** Something that ends the gateway's usefulness: its owner hears it (and decides), else a process warning says so. */
  #onFault(err: Error): void {
    this.#fault ??= err;
    if (!this.emit('fault', err) && this.#started) process.emitWarning(`TPO gateway ${this.name}: ${err.message}`, { code: 'SLUICE_TPO_FAULT' });
  }
}
