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
import { dirname, resolve } from 'node:path';
import { TypedEmitter } from '../events.js';
import { ClosedError, ConflictError, NotSupportedError } from '../errors.js';
import { defaultControlPath, startControlServer, type ControlServer } from './control-socket.js';
import { readKeyFile, type TpoConfig } from './config/config.js';
import { parsePeerChange, parseTableEntryChange, peerView, tableEntryView, type TpoPeerView, type TpoTableEntryView } from './config/changes.js';
import { loadTpoConfig } from './config/load.js';
import { Gateway } from './gateway/gateway.js';
import type { GatewayStatus } from './gateway/status.js';
import { DEFAULT_MARK, TransparentInterception } from './gateway/transparent.js';
import { ExplicitInterception } from './intercept/explicit.js';
import type { Interception } from './intercept/interception.js';
import {
  flowError,
  flowFailure,
  flowInfo,
  HandshakeFailureCoalescer,
  type TpoGatewayEvents,
  type TpoPeerRemoval,
  type TpoTableEntryRemoval,
} from './tpo-events.js';
import { peerFlowsResetText, peerUnreachableText } from './tpo-event-text.js';

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
  /** The config as it is now: the file's, with the run-time changes applied. */
  #config: TpoConfig;
  readonly #gateway: Gateway;
  readonly #interception: Interception | undefined;
  readonly #explicit: ExplicitInterception | undefined;
  readonly #transparent: TransparentInterception | undefined;
  /** Where a run-time peer's keyFile is read from: the config file's folder (or the working directory). */
  readonly #keyDir: string;
  /** Run-time changes, one at a time in call order. */
  #changes: Promise<unknown> = Promise.resolve();
  #control: ControlServer | undefined;
  #closing: Promise<void> | undefined;
  #fault: Error | undefined;
  #started = false;
  readonly #handshakes = new HandshakeFailureCoalescer();

  private constructor(config: TpoConfig, gateway: Gateway, interception: Interception | undefined, keyDir: string) {
    super();
    this.#config = config;
    this.#gateway = gateway;
    this.#interception = interception;
    this.#keyDir = keyDir;
    this.#explicit = interception instanceof ExplicitInterception ? interception : undefined;
    this.#transparent = interception instanceof TransparentInterception ? interception : undefined;
    gateway.on('peer-up', (peer) => this.emit('peerup', peer));
    gateway.on('peer-down', (peer) => this.emit('peerdown', peer));
    gateway.on('fault', (err) => this.#onFault(err));
    interception?.on('error', (err: Error) => this.#onFault(err));
    // Each event is built only when someone listens: hostile traffic must not cost allocations for nothing.
    gateway.on('flow-open', (flow) => {
      if (this.listenerCount('flowopen') > 0) this.emit('flowopen', flowInfo(flow));
    });
    gateway.on('flow-fail', (reason, role, tuple, peer, detail) => {
      if (this.listenerCount('flowfail') > 0) this.emit('flowfail', flowFailure(reason, role, tuple, peer, detail));
    });
    gateway.on('flow-error', (error) => {
      if (this.listenerCount('flowfail') > 0) this.emit('flowfail', flowError(error));
    });
    gateway.on('peer-unreachable', (peer, r) => {
      const address = r.address.includes(':') ? `[${r.address}]:${r.port}` : `${r.address}:${r.port}`;
      this.emit('peerunreachable', {
        peer,
        address,
        attempts: r.attempts,
        sinceMs: r.sinceMs,
        message: peerUnreachableText(peer, address, r.attempts, r.sinceMs),
      });
    });
    gateway.on('peer-flows-reset', (peer, flows, cause) =>
      this.emit('peerflowsreset', { peer, flows, cause, message: peerFlowsResetText(peer, flows, cause) }),
    );
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
    const none = options.interception === 'none';
    // Explicit listeners may be added at run time, so explicit interception exists even with an empty table.
    const interception: Interception | undefined = none
      ? undefined
      : !transparent
        ? new ExplicitInterception(config.table)
        : config.table.length
          ? new TransparentInterception({ table: config.table, instance: config.name, hooks: config.intercept.hooks, mark: DEFAULT_MARK })
          : undefined;
    const gateway = await Gateway.start(config, {
      ...(interception ? { interception, interceptionName: config.intercept.mode } : {}),
      ...(options.io ? { io: options.io } : {}),
      // In transparent mode the gateway's own sockets carry the mark the rules skip.
      ...(transparent && !none ? { mark: DEFAULT_MARK } : {}),
    });
    const keyDir = typeof options.config === 'string' ? dirname(resolve(options.config)) : process.cwd();
    const gw = new TpoGateway(config, gateway, interception, keyDir);
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
    return this.#config.name;
  }

  /** The config as it is now: the one it started with, with the run-time changes (addPeer, ...) applied. */
  get config(): TpoConfig {
    return this.#config;
  }

  /** The peers now, as the config writes them (never a key); their state is in status().peers. */
  peers(): TpoPeerView[] {
    return this.#config.peers.map(peerView);
  }

  /** The interception table now, as the config writes it; its listeners are in status().listeners. */
  table(): TpoTableEntryView[] {
    return this.#config.table.map(tableEntryView);
  }

  /**
   * Adds a peer at run time: `input` is a peer as in the config file's
   * `peers[]` (validated the same way: a PolicyValidationError with field
   * paths; a `keyFile` is read relative to the config file's folder). A
   * name or key id another peer has is a ConflictError. An initiator (with
   * `address`) starts its handshake at once: 'peerup' follows, or
   * 'peerunreachable'. With one peer before, that peer stops being the
   * default route (as it would in a file with two): name peers in table
   * entries or give routes.
   */
  addPeer(input: unknown): Promise<TpoPeerView> {
    return this.#change(() => {
      const peer = parsePeerChange(input, this.#config.peers, (f) => readKeyFile(resolve(this.#keyDir, f)));
      this.#gateway.addPeer(peer);
      this.#config = { ...this.#config, peers: [...this.#config.peers, peer] };
      const view = peerView(peer);
      this.emit('peeradded', view);
      return view;
    });
  }

  /**
   * Removes a peer at run time: its flows are reset (their applications
   * get an RST; 'peerflowsreset' says how many), it is told goodbye, and
   * routes naming it stop applying. A table entry that names it must be
   * removed first (ConflictError). Undefined: no such peer.
   */
  removePeer(name: string): Promise<TpoPeerRemoval | undefined> {
    return this.#change(async () => {
      if (!this.#config.peers.some((p) => p.name === name)) return undefined;
      const user = this.#config.table.find((e) => e.peers.includes(name));
      if (user) throw new ConflictError(`table entry '${user.name}' names peer '${name}': remove it first`);
      const r = await this.#gateway.removePeer(name);
      this.#config = { ...this.#config, peers: this.#config.peers.filter((p) => p.name !== name) };
      if (r?.wasUp) this.emit('peerdown', name);
      const removal = { name, flowsReset: r?.flowsReset ?? 0 };
      this.emit('peerremoved', removal);
      return removal;
    });
  }

  /**
   * Adds a table entry at run time (explicit interception): `input` is an
   * entry as in the config file's `table[]`, validated the same way
   * (PolicyValidationError with field paths; a taken name is a
   * ConflictError). Its listener opens before this resolves (a taken
   * address rejects with a SyscallError, EADDRINUSE, and nothing is
   * added). Transparent interception's rules are made at start: there
   * this is a NotSupportedError.
   */
  addTableEntry(input: unknown): Promise<TpoTableEntryView> {
    return this.#change(async () => {
      const explicit = this.#explicitOrRefuse();
      const entry = parseTableEntryChange(input, this.#config.intercept.mode, this.#config.peers, this.#config.table);
      await explicit.addEntry(entry);
      this.#config = { ...this.#config, table: [...this.#config.table, entry] };
      const view = tableEntryView(entry);
      this.emit('tableentryadded', view);
      return view;
    });
  }

  /**
   * Removes a table entry at run time: its listener closes (no new
   * client). Its TCP flows carry on until they end — or are reset now with
   * `resetFlows` — and its UDP flows end (their replies left from the
   * listener's socket). Undefined: no such entry.
   */
  removeTableEntry(name: string, options: { resetFlows?: boolean } = {}): Promise<TpoTableEntryRemoval | undefined> {
    return this.#change(async () => {
      const explicit = this.#explicitOrRefuse();
      if (!this.#config.table.some((e) => e.name === name)) return undefined;
      await explicit.removeEntry(name);
      this.#config = { ...this.#config, table: this.#config.table.filter((e) => e.name !== name) };
      const removal = { name, flowsEnded: this.#gateway.endEntryFlows(name, options.resetFlows === true) };
      this.emit('tableentryremoved', removal);
      return removal;
    });
  }

  /** Runs one change after the ones before it (each sees the config they left); a closed gateway refuses. */
  #change<T>(apply: () => T | Promise<T>): Promise<T> {
    const run = this.#changes.then(() => {
      if (this.closed) throw new ClosedError(`TPO gateway ${this.name}`);
      return apply();
    });
    this.#changes = run.catch(() => undefined);
    return run;
  }

  #explicitOrRefuse(): ExplicitInterception {
    if (this.#explicit) return this.#explicit;
    throw new NotSupportedError(
      'run-time table changes',
      this.#config.intercept.mode === 'transparent'
        ? "transparent interception's nf_tables rules are made at start: change the config file and restart the gateway"
        : 'the gateway runs without interception',
    );
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
