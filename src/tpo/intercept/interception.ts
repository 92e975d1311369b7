/**
 * The interception contract: what the gateway needs from any interception
 * mode (explicit listeners in explicit.ts, nf_tables + TPROXY in
 * tproxy-interceptor.ts), the flows they hand over, and the reset both
 * modes use to refuse a connection.
 */
import type { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { InterceptRule } from '../config/intercept-rules.js';
import { resetTcpSocket } from '../../sys/tcp-reset.js';

/** One end of an intercepted flow: an IP address (either family) and a port. */
export interface HostPort {
  readonly address: string;
  readonly port: number;
}

export interface TcpIntercepted {
  readonly socket: net.Socket;
  readonly entry: InterceptRule;
  readonly src: HostPort;
  readonly dst: HostPort;
}

export interface UdpIntercepted {
  readonly entry: InterceptRule;
  readonly src: HostPort;
  readonly dst: HostPort;
  readonly data: Uint8Array;
  /** Sends a datagram back to the client, from the address it sent to. */
  readonly reply: (data: Uint8Array) => void;
}

/**
 * What the gateway needs from any interception mode. Attach the 'tcp' and
 * 'udp' listeners before `listen()`: a connection or datagram that arrives
 * with no listener is refused (reset, dropped) and counted, never held.
 */
export interface Interception extends EventEmitter {
  on(event: 'tcp', listener: (c: TcpIntercepted) => void): this;
  on(event: 'udp', listener: (d: UdpIntercepted) => void): this;
  /** The interception stopped working (transparent: its UDP receive thread failed). */
  on(event: 'error', listener: (err: Error) => void): this;
  /** Opens the listeners (or installs the rules); flows are handed over from then on. */
  listen(): Promise<void>;
  /** `refused`: clients not carried; `errors`: socket errors counted (a failed accept, an ICMP error for a reply). */
  readonly stats: { refused: number; errors?: number };
  /** Where each entry listens (explicit mode), for status and tests. */
  listenAddresses(): { entry: string; protocol: string; address: string; port: number }[];
  close(): Promise<void>;
}

/** Ends an application's connection with a reset (not a FIN: it must not think its data was taken). */
export function resetSocket(s: net.Socket): void {
  // A late error on a socket nobody else listens to must not become an uncaught exception.
  s.on('error', () => undefined);
  resetTcpSocket(s);
}
