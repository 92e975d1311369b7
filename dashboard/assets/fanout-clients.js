/**
 * The fan-out's clients (GET /v1/fanout `stats.clients`), a table keyed by
 * the client's id: its peer, how it came (HTTP request or plain TCP
 * listener), the input it watches, the bytes sent with their rate between two
 * reads, the chunks and bytes it skipped (too slow to take them), what waits
 * in its pipe, and since when it is connected. As the subscribers' lists
 * (subscribers.js): counters are kept at every read, rows are only touched
 * while the list is open, and a list longer than AUTO_COLLAPSE starts closed.
 *
 * Peers and inputs are the daemon's text about strangers: text only (dom.js).
 */
import { h, setText, toggleClass } from './dom.js';
import { bitRate, bytes, count, duration } from './format.js';
import { perSecond } from './rates.js';
import { AUTO_COLLAPSE } from './subscribers.js';

/**
 * @typedef {{ id: number, peer?: string, via?: string, input?: string, connectedSince?: number, bytesSent?: number, chunksSent?: number,
 *   skippedChunks?: number, skippedBytes?: number, skippedDatagrams?: number, queuedBytes?: number }} ClientStats
 * @typedef {{ client: ClientStats, rate: number | null, row: HTMLTableRowElement | null }} Entry
 */

/** @param {unknown} v */
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
/** @param {unknown} v */
const str = (v) => (v === undefined || v === null ? '' : String(v));
const HEAD = ['peer', 'via', 'input', 'sent', 'rate', 'skipped chunks', 'skipped bytes', 'queued', 'connected'];

export class FanoutClientTable {
  /** @type {Map<string, Entry>} */
  #entries = new Map();
  #tbody = /** @type {HTMLTableSectionElement} */ (h('tbody'));
  #empty = h('p', { class: 'muted', text: 'No client.' });
  #count = h('span', { dataset: { role: 'fanout-client-count' } });
  #alerts = h('span', { class: 'alerts' });
  #details = /** @type {HTMLDetailsElement} */ (h('details', { class: 'subscribers fanout-clients' }));
  /** The user opened or closed the list: from then on it stays as they left it. */
  #userToggled = false;
  #settingOpen = false;
  /** Input key → its configured name, for the input column. @type {Map<string, string>} */
  #names = new Map();

  constructor() {
    this.#details.append(
      h('summary', null, 'Clients ', this.#count, ' ', this.#alerts),
      h(
        'div',
        { class: 'subs-body' },
        h('table', { class: 'subs' }, h('thead', null, h('tr', null, ...HEAD.map((t, i) => h('th', { class: i >= 3 ? 'num' : null, text: t })))), this.#tbody),
        this.#empty,
      ),
    );
    this.#details.addEventListener('toggle', () => {
      if (!this.#settingOpen) this.#userToggled = true;
      if (this.#details.open) this.#render();
    });
    this.element = this.#details;
  }

  get size() {
    return this.#entries.size;
  }

  /**
   * Every client now (others are dropped). With `dtS` (seconds since the last read) rates are computed.
   * @param {readonly ClientStats[]} clients
   * @param {number | null} dtS
   * @param {Map<string, string>} names input key → configured name
   */
  update(clients, dtS, names) {
    this.#names = names;
    const seen = new Set();
    for (const client of clients) {
      if (!client || typeof client !== 'object' || num(client.id) === undefined) continue;
      const id = String(client.id);
      seen.add(id);
      const entry = this.#entries.get(id);
      if (entry) {
        entry.rate = dtS === null ? null : perSecond(num(entry.client.bytesSent), num(client.bytesSent), dtS);
        entry.client = client;
      } else {
        this.#entries.set(id, { client, rate: null, row: null });
      }
    }
    for (const [id, entry] of this.#entries) {
      if (seen.has(id)) continue;
      entry.row?.remove();
      this.#entries.delete(id);
    }
    setText(this.#count, `(${count(this.#entries.size)})`);
    const skipping = [...this.#entries.values()].filter((e) => (num(e.client.skippedChunks) ?? 0) > 0).length;
    setText(this.#alerts, skipping ? `${count(skipping)} skipping` : '');
    if (!this.#userToggled) this.#setOpen(this.#entries.size <= AUTO_COLLAPSE);
    if (this.#details.open) this.#render();
  }

  /** @param {boolean} open */
  #setOpen(open) {
    if (this.#details.open === open) return;
    this.#settingOpen = true;
    this.#details.open = open;
    // The toggle event is dispatched asynchronously: clear the flag after it.
    setTimeout(() => (this.#settingOpen = false), 0);
  }

  #render() {
    this.#empty.hidden = this.#entries.size > 0;
    const now = Date.now();
    for (const [id, entry] of this.#entries) {
      if (!entry.row) {
        entry.row = this.#row(id, entry.client);
        this.#tbody.append(entry.row);
      }
      const c = entry.client;
      const cells = entry.row.cells;
      setText(cells[3], bytes(num(c.bytesSent) ?? NaN));
      cells[3].title = `${count(num(c.bytesSent))} bytes`;
      setText(cells[4], bitRate(entry.rate));
      setText(cells[5], count(num(c.skippedChunks)));
      setText(cells[6], bytes(num(c.skippedBytes) ?? NaN));
      setText(cells[7], bytes(num(c.queuedBytes) ?? NaN));
      const since = num(c.connectedSince);
      setText(cells[8], since === undefined ? '–' : duration((now - since) / 1000));
      toggleClass(entry.row, 'failing', (num(c.skippedChunks) ?? 0) > 0);
    }
  }

  /** @param {string} id @param {ClientStats} c */
  #row(id, c) {
    const input = str(c.input);
    const name = this.#names.get(input);
    return /** @type {HTMLTableRowElement} */ (
      h(
        'tr',
        { dataset: { client: id, peer: str(c.peer) } },
        h('td', { class: 'addr', dataset: { role: 'peer' }, text: str(c.peer) || '?' }),
        h('td', { text: str(c.via) || '?' }),
        h('td', { class: 'addr', dataset: { role: 'input' }, text: name ? `${name} (${input})` : input || '?' }),
        h('td', { class: 'num', dataset: { role: 'sent' } }),
        h('td', { class: 'num', dataset: { role: 'rate' } }),
        h('td', { class: 'num' }),
        h('td', { class: 'num' }),
        h('td', { class: 'num' }),
        h('td', { class: 'num', dataset: { role: 'age' } }),
      )
    );
  }
}
