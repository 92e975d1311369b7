/**
 * TPO gateways and their peers: state, smoothed RTT, measured send and
 * receive rates (from consecutive stats events), the pacing rate, loss (the
 * share of datagrams lost between two stats events, from the peer's `lost`
 * and `datagramsSent`; else retransmissions per second), flows carried. Keyed by name; rows are built once.
 */
import { h, setText, toggleClass } from './dom.js';
import { bitRate, bytes, count, percent, withUnit } from './format.js';
import { intervalLoss, perSecond } from './rates.js';

/**
 * @typedef {{ name: string, role?: string, address?: string, up?: boolean, flows?: number, srttMs?: number,
 *   bandwidthMbit?: number, pacingMbit?: number, bytesSent?: number, bytesReceived?: number, retransmissions?: number,
 *   datagramsSent?: number, lost?: number, lossRatio?: number, loss?: number }} Peer
 * @typedef {{ name: string, listen?: string, peers?: Peer[], flows?: unknown[] | number, table?: { flows?: number } }} Gateway
 * @typedef {{ peer: Peer, row: HTMLTableRowElement, sendRate: number | null, recvRate: number | null, retransRate: number | null, lossRatio: number | null }} PeerEntry
 * @typedef {{ element: HTMLElement, title: HTMLElement, info: HTMLElement, tbody: HTMLElement, peers: Map<string, PeerEntry>,
 *   listen: string | undefined, flows: number | undefined }} GatewayEntry
 */

export class GatewayList {
  /** @type {Map<string, GatewayEntry>} */
  #gateways = new Map();
  #container;
  #section;

  /**
   * @param {HTMLElement} section shown only when there are gateways
   * @param {HTMLElement} container
   */
  constructor(section, container) {
    this.#section = section;
    this.#container = container;
  }

  /**
   * Every gateway (a full list: others are removed). With `dtS`, rates are computed.
   * @param {readonly Gateway[]} gateways
   * @param {number | null} dtS
   */
  update(gateways, dtS) {
    const seen = new Set();
    for (const gw of gateways) {
      if (!gw || typeof gw.name !== 'string') continue;
      seen.add(gw.name);
      let entry = this.#gateways.get(gw.name);
      if (!entry) {
        entry = this.#create(gw.name);
        this.#gateways.set(gw.name, entry);
        this.#container.append(entry.element);
      }
      this.#fill(entry, gw, dtS);
    }
    for (const [name, entry] of this.#gateways) {
      if (seen.has(name)) continue;
      entry.element.remove();
      this.#gateways.delete(name);
    }
    this.#section.hidden = this.#gateways.size === 0;
  }

  /**
   * peerup / peerdown events: the state changes now, the counters at the next stats event.
   * @param {string} gateway
   * @param {string} peer
   * @param {boolean} up
   */
  setPeerUp(gateway, peer, up) {
    const entry = this.#gateways.get(gateway)?.peers.get(peer);
    if (!entry) return;
    entry.peer = { ...entry.peer, up };
    this.#renderPeer(entry);
  }

  /** @param {string} name */
  #create(name) {
    const title = h('h3', { text: name });
    const info = h('span', { class: 'muted' });
    const tbody = h('tbody');
    const head = ['peer', 'role', 'address', 'state', 'RTT', 'send', 'receive', 'pacing', 'loss', 'flows', 'sent', 'received'];
    const element = h(
      'article',
      { class: 'gateway', dataset: { gateway: name } },
      h('header', null, title, info),
      h('table', { class: 'peers' }, h('thead', null, h('tr', null, ...head.map((t, i) => h('th', { class: i >= 4 ? 'num' : null, text: t })))), tbody),
    );
    return { element, title, info, tbody, peers: new Map(), listen: undefined, flows: undefined };
  }

  /**
   * @param {GatewayEntry} entry
   * @param {Gateway} gw
   * @param {number | null} dtS
   */
  #fill(entry, gw, dtS) {
    const flows = typeof gw.flows === 'number' ? gw.flows : Array.isArray(gw.flows) ? gw.flows.length : gw.table?.flows;
    if (gw.listen !== undefined) entry.listen = gw.listen;
    if (flows !== undefined) entry.flows = flows;
    setText(
      entry.info,
      [entry.listen ? `listen ${entry.listen}` : '', entry.flows !== undefined ? `${count(entry.flows)} flows` : ''].filter(Boolean).join(' · '),
    );
    if (!Array.isArray(gw.peers)) return;
    const seen = new Set();
    for (const peer of gw.peers) {
      if (!peer || typeof peer.name !== 'string') continue;
      seen.add(peer.name);
      let pe = entry.peers.get(peer.name);
      if (!pe) {
        pe = { peer, row: this.#peerRow(peer.name), sendRate: null, recvRate: null, retransRate: null, lossRatio: null };
        entry.peers.set(peer.name, pe);
        entry.tbody.append(pe.row);
      } else if (dtS === null) {
        // A full status from a request is not on the stats events' clock: take what it adds, keep the counters rates come from.
        pe.peer = { ...pe.peer, role: peer.role ?? pe.peer.role, address: peer.address ?? pe.peer.address, up: peer.up ?? pe.peer.up };
      } else {
        pe.sendRate = perSecond(pe.peer.bytesSent, peer.bytesSent, dtS);
        pe.recvRate = perSecond(pe.peer.bytesReceived, peer.bytesReceived, dtS);
        pe.retransRate = perSecond(pe.peer.retransmissions, peer.retransmissions, dtS);
        pe.lossRatio = intervalLoss(pe.peer, peer);
        // The stats events' summary leaves out what does not change (role, address): keep the snapshot's.
        pe.peer = { ...peer, role: peer.role ?? pe.peer.role, address: peer.address ?? pe.peer.address };
      }
      this.#renderPeer(pe);
    }
    for (const [name, pe] of entry.peers) {
      if (seen.has(name)) continue;
      pe.row.remove();
      entry.peers.delete(name);
    }
  }

  /** @param {string} name */
  #peerRow(name) {
    const cells = [h('td', { class: 'addr', text: name })];
    for (let i = 1; i < 12; i++) cells.push(h('td', { class: i >= 4 ? 'num' : null }));
    return /** @type {HTMLTableRowElement} */ (h('tr', { dataset: { peer: name } }, ...cells));
  }

  /** @param {PeerEntry} pe */
  #renderPeer(pe) {
    const { peer, row } = pe;
    const c = row.cells;
    setText(c[1], peer.role ?? '');
    setText(c[2], peer.address ?? '–');
    setText(c[3], peer.up === undefined ? '?' : peer.up ? 'up' : 'down');
    toggleClass(row, 'down', peer.up === false);
    setText(c[4], peer.srttMs === undefined ? '–' : `${peer.srttMs.toFixed(peer.srttMs < 10 ? 2 : 1)} ms`);
    setText(c[5], bitRate(pe.sendRate));
    setText(c[6], bitRate(pe.recvRate));
    setText(c[7], peer.pacingMbit === undefined ? '–' : withUnit(peer.pacingMbit * 1e6, 'bit/s'));
    const ratio = pe.lossRatio ?? peer.lossRatio ?? peer.loss;
    setText(c[8], ratio !== undefined ? percent(ratio) : pe.retransRate === null ? '–' : `${pe.retransRate.toFixed(1)} retrans/s`);
    setText(c[9], count(peer.flows));
    setText(c[10], peer.bytesSent === undefined ? '–' : bytes(peer.bytesSent));
    setText(c[11], peer.bytesReceived === undefined ? '–' : bytes(peer.bytesReceived));
  }
}
