/**
 * One gateway's link to one peer gateway (issue #6): the handshake over a
 * datagram port (datagram-port.ts: batched sendmmsg/recvmmsg where the
 * host allows, node:dgram otherwise; handshake.ts), then a data mover for the session
 * (data-mover.ts), with the packet driver (packet-driver.ts) turning
 * messages into driver buffers on the way out and back on the way in.
 *
 * The initiator sends an initiation and repeats it (every 250 ms, backing
 * off 1.5x to 4 s) until an answer authenticates; it then starts its
 * session and sends an authenticated datagram at once (a keepalive, if no
 * data is waiting). The responder answers each fresh, authentic initiation
 * newer than the last one it answered (InitiationGuard) with one response
 * and offers a session, but the offer stays unconfirmed — it sends nothing
 * on it and the session it has keeps running — until a transport datagram
 * authenticates under the offered keys: only the real initiator can send
 * one, so a replayed initiation (after a restart the responder has
 * forgotten which it answered) draws that one 60-byte response and
 * nothing more, and never displaces a live session (WireGuard's responder
 * waits for the initiator's first data message the same way). A newer
 * offer replaces an unconfirmed one: there is at most one per link.
 *
 * When the session's peer goes down (nothing authentic for the data
 * mover's deadAfterMs), the initiator starts initiating again while the
 * session keeps probing: if the link comes back the old session resumes;
 * if the responder restarted (it lost the session's keys), the new
 * handshake replaces the session and 'reset' reports how many bytes of
 * driver buffers the old one still held unacknowledged (the edges turn
 * that into resets of their flows). A goodbye always emits 'reset': the
 * peer is stopping or restarting, so its side of every flow is gone even
 * when nothing was in flight (a flow waiting for the peer's window would
 * otherwise wait for ever on a new session that knows nothing of it).
 * A peer that crashed says no goodbye, so a new session also emits 'reset'
 * when it comes from a restarted peer, whatever was in flight
 * (session-ids.ts tells one from a peer that was only unreachable).
 * Datagrams are told apart by their
 * kind byte; anything for no known session is dropped and counted. Until
 * the session is up, messages wait in the packet driver's flow-controlled
 * path: send() returns false and 'drain' follows.
 */
import { EventEmitter } from 'node:events';
import { randomBytes, randomInt } from 'node:crypto';
import type { DatagramPort, DatagramSource } from '../io/datagram-port.js';
import { DataMover, type DataMoverOptions } from '../protocol/data-mover.js';
import { segmentSizeFor } from './path-mtu.js';
import { ResponderIds, sameProcess } from './session-ids.js';
import { deriveSessionKeys, openDatagram, type SessionKeys } from '../protocol/datagram-crypto.js';
import { decodeInitiate, decodeRespond, encodeInitiate, encodeRespond, peekKeyId, MAX_CLOCK_SKEW_MS, SESSION_NONCE_LENGTH } from '../../wire/tpo/handshake.js';
import { InitiationGuard } from '../protocol/initiation-guard.js';
import { UnansweredHandshakes, type PeerUnreachable } from './unanswered.js';
import type { HandshakeFailureReason, PeerLinkStats } from './link-types.js';
import { PacketDriver, type PacketDriverOptions, type PacketDriverStats } from '../protocol/packet-driver.js';
import { openDriverBuffer } from '../../wire/tpo/compression.js';
import type { CarriedMessage } from '../../wire/tpo/driver-buffer.js';
import { WireError } from '../../wire/tpo/errors.js';
import { decodeDataMoverField } from '../../wire/tpo/data-mover.js';
import { DatagramKind, peekKind } from '../../wire/tpo/kind.js';

const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 4000;

export interface PeerLinkOptions {
  /** The port this link sends and receives on; the caller opens and closes it (several links may not share one). */
  readonly port: DatagramPort;
  readonly role: 'initiator' | 'responder';
  /** The pair's pre-shared key (at least 16 bytes) and its id. */
  readonly psk: Uint8Array;
  readonly keyId?: number;
  /** Where the peer is (the initiator must know; the responder learns it from the initiation). */
  readonly peer?: { address: string; port: number };
  readonly mover?: Omit<DataMoverOptions, 'localId' | 'peerId' | 'keys' | 'transmit' | 'transmitCopies' | 'segmentSize'>;
  readonly driver?: PacketDriverOptions;
  /**
   * The IP MTU of the path to the peer, bytes: this side's segments are cut
   * to fit it (segmentSizeForMtu). Default: 1500, or LOOPBACK_MTU when the
   * session's peer is a loopback address (path-mtu.ts).
   */
  readonly mtu?: number;
}

export type { HandshakeFailureReason, PeerLinkStats } from './link-types.js';

export class PeerLink extends EventEmitter {
  readonly stats: PeerLinkStats = {
    initiationsSent: 0,
    responsesSent: 0,
    sessions: 0,
    droppedHandshake: 0,
    droppedNoSession: 0,
    badBuffers: 0,
    goodbyes: 0,
    handlerErrors: 0,
  };
  readonly #o: PeerLinkOptions;
  readonly #guard = new InitiationGuard();
  readonly #unanswered = new UnansweredHandshakes();
  readonly #driver: PacketDriver;
  #peer: { address: string; port: number } | undefined;
  #mover: DataMover | undefined;
  #localId = randomInt(1, 0xffffffff);
  readonly #ids = new ResponderIds();
  /** The current session's peer connection id. */
  #sessionPeerId: number | undefined;
  #pending: { datagram: Uint8Array; nonce: Uint8Array; sentAt: number } | undefined;
  /** Initiator: the last initiation's timestamp (each is later than the one before, as the responder requires). */
  #lastTimestamp = 0;
  /** Responder: the session offered in the last response, until a transport datagram authenticates under its keys. */
  #offer: { localId: number; peerId: number; keys: SessionKeys } | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = RETRY_FIRST_MS;
  /** Driver buffers sealed before the session was up. */
  readonly #waiting: Uint8Array[] = [];
  #closed = false;
  readonly #onMessage = (msg: Buffer, from: DatagramSource, receivedAt: number) => this.#receive(msg, from, receivedAt);

  constructor(options: PeerLinkOptions) {
    super();
    this.#o = options;
    this.#peer = options.peer;
    this.#driver = new PacketDriver((b) => this.#sendBuffer(b.bytes, b.urgent, b.redundant), options.driver);
    options.port.on('message', this.#onMessage);
    if (options.role === 'initiator') {
      if (!options.peer) throw new Error('an initiator needs the peer address');
      this.#initiate();
    }
  }

  /** The connection id this side gave its current (or next) session: the peer puts it in every transport datagram. */
  get localId(): number {
    return this.#localId;
  }

  /** Whether transport datagrams with connection id `id` are this link's: its session's, or the one it offered and awaits confirmation of. */
  ownsConnection(id: number): boolean {
    return id === this.#localId || (this.#offer !== undefined && id === this.#offer.localId);
  }

  /** Initiations sent since the peer last answered (0 on a responder, or while a session is up). */
  get unanswered(): number {
    return this.#unanswered.attempts;
  }

  /** Sessions offered and not confirmed yet (0 or 1). */
  get unconfirmed(): number {
    return this.#offer ? 1 : 0;
  }

  /** The packet driver's counters (messages, buffers, compression, seal failures). */
  get driverStats(): Readonly<PacketDriverStats> {
    return this.#driver.stats;
  }

  /** The current session's data mover (undefined before the handshake). */
  get mover(): DataMover | undefined {
    return this.#mover;
  }

  get up(): boolean {
    return this.#mover !== undefined && !this.#mover.peerDown;
  }

  /** Queues a message of trust domain `domain` (`urgent`: see PacketDriver.push). False: the link is full or not up yet; wait for 'drain'. */
  send(domain: number, message: CarriedMessage, urgent = false): boolean {
    this.#driver.push(domain, message, urgent);
    const room = this.#mover?.hasRoom ?? false;
    // The message may still sit in the driver's open buffer: make sure 'drain' follows once there is room.
    if (!room) this.#mover?.requestDrain();
    return room;
  }

  /** Seals what the driver holds now (e.g. before a close). */
  flush(): void {
    this.#driver.flush();
  }

  /** Ends the link; `goodbye` (default) tells the peer, so it re-pairs at once instead of after its dead-peer timeout. */
  close(goodbye = true): void {
    this.#driver.close();
    if (goodbye) this.#mover?.goodbye();
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#mover?.close();
    this.#o.port.off('message', this.#onMessage);
  }

  #sendBuffer(bytes: Uint8Array, urgent: boolean, redundant: boolean): void {
    if (!this.#mover) {
      this.#waiting.push(bytes);
      return;
    }
    this.#mover.send(bytes, urgent, redundant);
  }

  #transmit(d: Uint8Array): void {
    if (this.#closed || !this.#peer) return;
    this.#o.port.send(d, this.#peer);
  }

  #initiate(): void {
    if (this.#closed) return;
    const nonce = randomBytes(SESSION_NONCE_LENGTH);
    // Strictly increasing, even if the wall clock steps back a little: the responder ignores anything not newer than the last.
    this.#lastTimestamp = Math.max(Date.now(), this.#lastTimestamp + 1);
    const datagram = encodeInitiate(this.#o.psk, { initiatorId: this.#localId, keyId: this.#o.keyId ?? 0, timestamp: this.#lastTimestamp, nonce });
    this.#pending = { datagram, nonce, sentAt: performance.now() };
    this.#transmit(datagram);
    this.stats.initiationsSent++;
    const report = this.#unanswered.sent();
    // Silence is all an initiator hears of a wrong key, a wrong address or a stopped peer: say it, with backoff.
    if (report && this.#peer) this.emit('unreachable', { ...report, address: this.#peer.address, port: this.#peer.port } satisfies PeerUnreachable);
    this.#retry = setTimeout(() => this.#initiate(), this.#retryMs);
    this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 1.5);
  }

  #receive(msg: Buffer, rinfo: DatagramSource, receivedAt: number): void {
    if (this.#closed || msg.length < 2) return;
    const kind = peekKind(msg);
    try {
      if (kind === DatagramKind.transport) {
        const offer = this.#offer;
        if (offer && msg.length >= 8 && msg.readUInt32BE(4) === offer.localId) this.#confirm(msg, rinfo, offer);
        else if (!this.#mover) this.stats.droppedNoSession++;
        else this.#mover.receive(msg, receivedAt);
      } else if (kind === DatagramKind.initiate && this.#o.role === 'responder') {
        this.#onInitiate(msg, rinfo);
      } else if (kind === DatagramKind.respond && this.#o.role === 'initiator') {
        this.#onRespond(msg, rinfo);
      } else {
        this.#droppedHandshake('unexpected', rinfo);
      }
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.#droppedHandshake(err.reason === 'checksum' ? 'authentication' : 'malformed', rinfo);
    }
  }

  /** Counts a dropped handshake datagram, and says why to whoever listens ('handshake-failure'). */
  #droppedHandshake(reason: HandshakeFailureReason, from: DatagramSource): void {
    this.stats.droppedHandshake++;
    if (this.listenerCount('handshake-failure') > 0) this.emit('handshake-failure', reason, from);
  }

  #onInitiate(msg: Buffer, rinfo: DatagramSource): void {
    if (peekKeyId(msg) !== (this.#o.keyId ?? 0)) {
      this.#droppedHandshake('unknownKey', rinfo);
      return;
    }
    const init = decodeInitiate(this.#o.psk, msg);
    const now = Date.now();
    if (!this.#guard.accept(init, now)) {
      this.#droppedHandshake(Math.abs(now - init.timestamp) > MAX_CLOCK_SKEW_MS ? 'stale' : 'replayed', rinfo);
      return;
    }
    // A fresh, authentic initiation: offer a session (the peer may have restarted), but send
    // nothing on it, and keep the current one, until the initiator proves it with its first datagram.
    let localId: number;
    do localId = this.#ids.next();
    while (localId === this.#localId);
    const nonce = randomBytes(SESSION_NONCE_LENGTH);
    this.#offer = { localId, peerId: init.initiatorId, keys: deriveSessionKeys(this.#o.psk, init.nonce, nonce, false) };
    // The one answer an initiation gets: 60 bytes, to where it came from.
    this.#o.port.send(encodeRespond(this.#o.psk, msg, { initiatorId: init.initiatorId, responderId: localId, nonce }), {
      address: rinfo.address,
      port: rinfo.port,
    });
    this.stats.responsesSent++;
  }

  /** A transport datagram for the offered session: if it authenticates, the offer becomes the session. */
  #confirm(msg: Buffer, rinfo: DatagramSource, offer: { localId: number; peerId: number; keys: SessionKeys }): void {
    const { field, payloadOffset } = decodeDataMoverField(msg);
    if (!openDatagram(offer.keys.receive, field.transport.physical, msg, payloadOffset)) {
      this.#droppedHandshake('authentication', rinfo);
      return;
    }
    this.#offer = undefined;
    // Only the initiator could have sent it: this is where the session's peer is.
    this.#peer = { address: rinfo.address, port: rinfo.port };
    this.#localId = offer.localId;
    this.#start(offer.peerId, offer.keys);
    this.#mover!.receive(msg);
  }

  #onRespond(msg: Buffer, rinfo: DatagramSource): void {
    if (!this.#pending) {
      this.#droppedHandshake('unexpected', rinfo);
      return;
    }
    const r = decodeRespond(this.#o.psk, this.#pending.datagram, msg);
    if (r.initiatorId !== this.#localId) {
      this.#droppedHandshake('unexpected', rinfo);
      return;
    }
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#unanswered.answered();
    const keys = deriveSessionKeys(this.#o.psk, this.#pending.nonce, r.nonce, true);
    // The response authenticates against the latest initiation, so this is one round trip.
    const handshakeRttMs = performance.now() - this.#pending.sentAt;
    this.#pending = undefined;
    this.#start(r.responderId, keys, handshakeRttMs);
    // The responder sends nothing on the session until something authenticated arrives on it: say so at once.
    this.#mover!.keepalive();
  }

  #start(peerId: number, keys: ReturnType<typeof deriveSessionKeys>, handshakeRttMs?: number): void {
    const old = this.#mover;
    const samePeer = this.#sessionPeerId === undefined || sameProcess(this.#o.role === 'responder' ? 'initiator' : 'responder', this.#sessionPeerId, peerId);
    this.#sessionPeerId = peerId;
    if (old) {
      old.close();
      // What the old session had not delivered is gone with it, and so is every flow of a restarted
      // peer: say so, so flows can be reset.
      if (!old.idle || !samePeer) this.emit('reset', { unackedBytes: old.backlogBytes });
    }
    const segmentSize = segmentSizeFor(this.#peer, this.#o.mtu);
    const mover = new DataMover({
      ...this.#o.mover,
      ...(segmentSize !== undefined ? { segmentSize } : {}),
      localId: this.#localId,
      peerId,
      keys,
      transmit: (d) => this.#transmit(d),
      // The batched port copies each datagram into its stage at once: the mover need not allocate one per datagram.
      transmitCopies: this.#o.port.copiesOnSend === true,
      ...(handshakeRttMs !== undefined ? { initialRttMs: handshakeRttMs } : {}),
    });
    this.#mover = mover;
    this.stats.sessions++;
    mover.on('buffer', (b: Uint8Array) => {
      let opened: ReturnType<typeof openDriverBuffer>;
      try {
        opened = openDriverBuffer(b);
      } catch (err) {
        if (!(err instanceof WireError)) throw err;
        this.stats.badBuffers++;
        return;
      }
      // One message's handler failing (a bug) must not lose the buffer's other messages.
      for (const m of opened.messages) {
        try {
          this.emit('message', opened.header.domain, m);
        } catch (err) {
          this.stats.handlerErrors++;
          if (this.stats.handlerErrors === 1)
            process.emitWarning(`peer link: a message's handler failed, the message was dropped (${err instanceof Error ? err.message : String(err)})`, {
              code: 'SLUICE_TPO_HANDLER',
            });
        }
      }
    });
    mover.on('drain', () => this.emit('drain'));
    mover.on('goodbye', () => {
      if (this.#mover !== mover) return;
      // The peer ended the session (it is stopping or restarting): drop it now.
      mover.close();
      this.#mover = undefined;
      // Its flows are reset below: the next session starts afresh.
      this.#sessionPeerId = undefined;
      this.stats.goodbyes++;
      // Idle or not: the peer's flows ended with it (see the header).
      this.emit('reset', { unackedBytes: mover.backlogBytes });
      this.emit('down');
      if (this.#o.role === 'initiator' && !this.#pending && !this.#closed) {
        this.#retryMs = RETRY_FIRST_MS;
        this.#initiate();
      }
    });
    mover.on('down', () => {
      this.emit('down');
      // The responder may have restarted and forgotten the session: ask for a new one.
      if (this.#o.role === 'initiator' && !this.#pending && !this.#closed) {
        this.#retryMs = RETRY_FIRST_MS;
        this.#initiate();
      }
    });
    mover.on('up', () => {
      this.emit('up');
      // The old session came back: stop asking for a new one.
      this.#unanswered.answered();
      if (this.#retry) clearTimeout(this.#retry);
      this.#retry = undefined;
      this.#pending = undefined;
    });
    for (const b of this.#waiting.splice(0)) mover.send(b);
    this.emit('session', { localId: this.#localId, peerId });
    this.emit('drain');
  }
}
