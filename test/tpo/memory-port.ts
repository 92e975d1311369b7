/**
 * An in-memory datagram port for driving peer links and the port demux
 * without sockets: what one port sends reaches the port registered at the
 * destination address on a later task (or is dropped), and every datagram
 * sent is logged. 'message' is emitted directly (no safety net), so a
 * listener that throws fails the test that fed it.
 */
import { EventEmitter } from 'node:events';
import { newPortStats, type DatagramPort, type DatagramSource, type DatagramTarget } from '../../src/tpo/io/port.js';

export interface Sent {
  readonly from: DatagramTarget;
  readonly to: DatagramTarget;
  readonly bytes: Uint8Array;
}

export class MemoryNet {
  readonly ports = new Map<string, MemoryPort>();
  readonly log: Sent[] = [];
  /** Deliveries stop while false (a cut link). */
  connected = true;

  port(address: string, port: number): MemoryPort {
    const p = new MemoryPort(this, { address, port });
    this.ports.set(`${address}|${port}`, p);
    return p;
  }

  /** Datagrams sent to `address` (any port). */
  sentTo(address: string): Sent[] {
    return this.log.filter((s) => s.to.address === address);
  }
}

export class MemoryPort extends EventEmitter implements DatagramPort {
  readonly kind = 'portable' as const;
  readonly fallbackReason = undefined;
  readonly stats = newPortStats();

  constructor(
    readonly net: MemoryNet,
    readonly local: DatagramTarget,
  ) {
    super();
  }

  send(datagram: Uint8Array, to: DatagramTarget): void {
    const bytes = Uint8Array.from(datagram);
    this.net.log.push({ from: this.local, to, bytes });
    this.stats.datagramsSent++;
    this.stats.bytesSent += bytes.length;
    const dst = this.net.ports.get(`${to.address}|${to.port}`);
    if (!dst || !this.net.connected) return;
    const from: DatagramSource = { address: this.local.address, port: this.local.port, family: 'IPv4' };
    setImmediate(() => {
      if (this.net.connected) dst.emit('message', Buffer.from(bytes), from);
    });
  }

  /** Hands `bytes` to this port's listeners now, as if `from` had sent it. */
  inject(bytes: Uint8Array, from: DatagramTarget): void {
    this.emit('message', Buffer.from(bytes), { address: from.address, port: from.port, family: 'IPv4' });
  }

  flush(): void {}

  address(): { address: string; port: number; family: 'IPv4' | 'IPv6' } {
    return { ...this.local, family: 'IPv4' };
  }

  async close(): Promise<void> {
    this.net.ports.delete(`${this.local.address}|${this.local.port}`);
  }
}
