/**
 * One UDP port for all of a gateway's peer links (issue #7: one gateway
 * peers with several others on its one listen address). Each link gets a
 * view of the port that sees only its own datagrams, told apart the way
 * docs/WIRE.md §3 allows without any key:
 *   - transport datagrams (kind 1) by the connection id in their prefix,
 *     which the receiving link chose for its session (or for the session
 *     it offered in a response and awaits confirmation of);
 *   - handshake initiations (kind 2) by their key id (each peer has its
 *     own key and key id);
 *   - handshake responses (kind 3) by the address the link initiated to,
 *     or, if none matches (a NAT between), every initiating link, each of
 *     which checks the MAC against its own pending initiation.
 * Anything else is dropped and counted; nothing is answered here.
 */
import { EventEmitter } from 'node:events';
import type { DatagramListener, DatagramPort, DatagramSource, DatagramTarget } from '../io/datagram-port.js';
import { peekKeyId } from '../../wire/tpo/handshake.js';
import { DatagramKind, peekKind } from '../../wire/tpo/kind.js';
import { WireError } from '../../wire/tpo/errors.js';

/** What the demux needs to know about a link. */
export interface DemuxedLink {
  /** Whether transport datagrams with this connection id are the link's (ids change per session, so this is asked per datagram). */
  ownsConnection(id: number): boolean;
  readonly keyId: number;
  readonly role: 'initiator' | 'responder';
  readonly peer?: DatagramTarget;
  /** The peer's name (for the owner's reports). */
  readonly name?: string;
}

/** A link's view of the shared port (PeerLink uses send, on/off 'message'). */
class LinkView extends EventEmitter implements DatagramPort {
  constructor(readonly shared: DatagramPort) {
    super();
  }
  get kind() {
    return this.shared.kind;
  }
  get fallbackReason() {
    return this.shared.fallbackReason;
  }
  get copiesOnSend() {
    return this.shared.copiesOnSend;
  }
  get stats() {
    return this.shared.stats;
  }
  send(datagram: Uint8Array, to: DatagramTarget): void {
    this.shared.send(datagram, to);
  }
  flush(): void {
    this.shared.flush();
  }
  address() {
    return this.shared.address();
  }
  /** The shared port is the demux's to close. */
  async close(): Promise<void> {}
}

export interface PortDemuxOptions {
  /**
   * An initiation no link takes (counted as noLink), told to the owner:
   * `initiator` names the peer with its key id when that peer is one this
   * side initiates to (both sides have the other's address); undefined:
   * no peer has its key id.
   */
  readonly onUnclaimedInitiation?: (from: DatagramSource, initiator: string | undefined) => void;
}

export class PortDemux {
  readonly dropped = { malformed: 0, noLink: 0, noSource: 0 };
  readonly #port: DatagramPort;
  readonly #links: { link: DemuxedLink; view: LinkView }[] = [];
  readonly #onMessage: DatagramListener = (msg, from, receivedAt) => this.#dispatch(msg, from, receivedAt);
  readonly #onUnclaimed: PortDemuxOptions['onUnclaimedInitiation'];

  constructor(port: DatagramPort, options: PortDemuxOptions = {}) {
    this.#port = port;
    this.#onUnclaimed = options.onUnclaimedInitiation;
    port.on('message', this.#onMessage);
  }

  /** A view of the port for `link` (its connection ids are asked at each datagram: they change per session). */
  view(link: DemuxedLink): DatagramPort {
    const view = new LinkView(this.#port);
    this.#links.push({ link, view });
    return view;
  }

  /** Stops handing datagrams to a view (its peer was removed). */
  remove(view: DatagramPort): void {
    const i = this.#links.findIndex((l) => l.view === view);
    if (i >= 0) this.#links.splice(i, 1);
  }

  #dispatch(msg: Buffer, from: DatagramSource | undefined, receivedAt: number): void {
    if (!from) {
      // The ports never hand over a datagram without its source; should one, it is dropped here, not thrown on.
      this.dropped.noSource++;
      return;
    }
    if (msg.length < 8 || msg[0] !== 1) {
      this.dropped.malformed++;
      return;
    }
    const kind = peekKind(msg);
    if (kind === DatagramKind.transport) {
      // Every data datagram comes this way: no arrays built for it (several links may own one id only in theory).
      const id = msg.readUInt32BE(4);
      let taken = false;
      for (const l of this.#links) {
        if (!l.link.ownsConnection(id)) continue;
        taken = true;
        l.view.emit('message', msg, from, receivedAt);
      }
      if (!taken) this.dropped.noLink++;
      return;
    }
    let targets: LinkView[] = [];
    let keyId = -1;
    if (kind === DatagramKind.initiate) {
      try {
        keyId = peekKeyId(msg);
      } catch (err) {
        if (!(err instanceof WireError)) throw err;
        this.dropped.malformed++;
        return;
      }
      targets = this.#links.filter((l) => l.link.role === 'responder' && l.link.keyId === keyId).map((l) => l.view);
    } else if (kind === DatagramKind.respond) {
      const initiators = this.#links.filter((l) => l.link.role === 'initiator');
      const exact = initiators.filter((l) => l.link.peer && l.link.peer.port === from.port && l.link.peer.address === from.address);
      targets = (exact.length ? exact : initiators).map((l) => l.view);
    } else {
      this.dropped.malformed++;
      return;
    }
    if (!targets.length) {
      this.dropped.noLink++;
      if (kind === DatagramKind.initiate && this.#onUnclaimed) {
        const initiator = this.#links.find((l) => l.link.role === 'initiator' && l.link.keyId === keyId);
        this.#onUnclaimed(from, initiator?.link.name);
      }
      return;
    }
    for (const t of targets) t.emit('message', msg, from, receivedAt);
  }

  close(): void {
    this.#port.off('message', this.#onMessage);
  }
}
