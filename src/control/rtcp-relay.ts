/**
 * RtcpRelay: the RTCP half of an RTP flow with `rtcp: 'port+1'`. RTCP is a
 * few datagrams a second, so it is relayed here in user space, the same on
 * every tier: what the flow's allowed sources send to listen port+1 (sender
 * reports, SDES, BYE) goes to each subscriber's port+1, from listen port+1;
 * what a subscriber sends there (receiver reports) is read — it tells that
 * the subscriber is alive — and never forwarded: forwarding N subscribers'
 * reports to the source would let anyone who can pose as a subscriber aim
 * traffic at it. Anything else is dropped and counted.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createSourceMatcher, type SourceFilter } from '../policy/source-filter.js';
import { canonicalAddress, endpointKey, formatEndpoint, isWildcard, unmapAddress, type Endpoint } from '../wire/endpoint.js';

/** What the RTCP relay did (FlowStats.rtcp). */
export interface RtcpCounters {
  /** RTCP datagrams from allowed sources, each sent to every subscriber. */
  readonly fromSources: number;
  /** Copies of them sent (a 1→8 flow turns one into eight). */
  readonly copies: number;
  /** Reports from subscribers (read, not forwarded). */
  readonly fromSubscribers: number;
  /** Datagrams that were not RTCP, or came from neither an allowed source nor a subscriber. */
  readonly dropped: number;
}

/** Smallest RTCP packet: the 4-byte header and the sender SSRC (RFC 3550 §6.4). */
const MIN_RTCP = 8;

/** RTCP version 2 with a packet type in RFC 5761's RTCP range (192–223): SR, RR, SDES, BYE, APP, feedback. */
function looksLikeRtcp(d: Buffer): boolean {
  return d.length >= MIN_RTCP && d[0]! >> 6 === 2 && d[1]! >= 192 && d[1]! <= 223;
}

/** The RTCP address of an RTP endpoint. */
export function rtcpOf(ep: Endpoint): Endpoint {
  return { ...ep, port: ep.port + 1 };
}

export class RtcpRelay {
  readonly #socket: Socket;
  readonly #fromSource: (address: string) => boolean;
  readonly #onReport: (subscriber: string) => void;
  /** Subscribers' RTCP destinations, and their RTP and RTCP source keys → the subscriber's RTP URL. */
  #targets: Endpoint[] = [];
  #bySource = new Map<string, string>();
  #fromSources = 0;
  #copies = 0;
  #fromSubscribers = 0;
  #dropped = 0;

  private constructor(socket: Socket, sources: SourceFilter, onReport: (subscriber: string) => void) {
    this.#socket = socket;
    this.#fromSource = createSourceMatcher(sources);
    this.#onReport = onReport;
    socket.on('message', (msg, rinfo) => this.#receive(msg, rinfo.address, rinfo.port));
    // ICMP errors for a copy surface here as socket errors on Linux: a subscriber without RTCP port is not a fault of the relay.
    socket.on('error', () => undefined);
  }

  /** Binds listen port+1 of `listen` (the flow's RTP listen address as bound). */
  static async open(listen: Endpoint, sources: SourceFilter, onReport: (subscriber: string) => void): Promise<RtcpRelay> {
    const at = rtcpOf(listen);
    const socket = createSocket({ type: at.family === 6 ? 'udp6' : 'udp4', ipv6Only: at.family === 6 && !isWildcard(at) });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: at.address, port: at.port, exclusive: true }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new RtcpRelay(socket, sources, onReport);
  }

  /** The subscribers (their RTP endpoints) to send sender reports to and to hear reports from. */
  setSubscribers(subscribers: readonly Endpoint[]): void {
    this.#targets = subscribers.map(rtcpOf);
    const bySource = new Map<string, string>();
    for (const s of subscribers) {
      const url = formatEndpoint(s);
      bySource.set(endpointKey(s), url);
      bySource.set(endpointKey(rtcpOf(s)), url);
    }
    this.#bySource = bySource;
  }

  counters(): RtcpCounters {
    return { fromSources: this.#fromSources, copies: this.#copies, fromSubscribers: this.#fromSubscribers, dropped: this.#dropped };
  }

  close(): void {
    this.#socket.close();
  }

  #receive(msg: Buffer, address: string, port: number): void {
    if (!looksLikeRtcp(msg)) {
      this.#dropped++;
      return;
    }
    const plain = unmapAddress(address);
    const subscriber = this.#bySource.get(endpointKey({ address: canonicalAddress(plain), port, family: plain.includes(':') ? 6 : 4 }));
    if (subscriber !== undefined) {
      this.#fromSubscribers++;
      this.#onReport(subscriber);
      return;
    }
    if (!this.#fromSource(plain)) {
      this.#dropped++;
      return;
    }
    this.#fromSources++;
    for (const t of this.#targets) {
      this.#copies++;
      this.#socket.send(msg, t.port, t.address);
    }
  }
}
