/**
 * One flow's subscribers: a table keyed by address. Counters and rates are
 * kept for every subscriber each second, but the rows are only touched while
 * the list is open, and a list longer than AUTO_COLLAPSE starts closed, so a
 * hundred flows of a hundred subscribers cost the page a few small writes a
 * second. Each row has a remove button (click twice: the first click arms it
 * for three seconds, so a stray click never cuts a live subscriber).
 */
import { h, setText, toggleClass } from './dom.js';
import { bitRate, bytes, clock, count } from './format.js';
import { dropText, dropTotal, perSecond } from './rates.js';

/** Lists longer than this start (and, until the user opens them, stay) collapsed. */
export const AUTO_COLLAPSE = 10;
const ARM_MS = 3000;
/** The remove button's text: a narrow cross, then a question once armed. */
const IDLE = '✕';
const ARMED = 'Remove?';

/**
 * @typedef {{ to: string, packetsOut: number, bytesOut: number, drops?: Record<string, number>, lastError?: string, suspendedUntil?: number }} Destination
 * @typedef {{ dest: Destination, rate: number | null, row: HTMLTableRowElement | null }} Entry
 */

export class SubscriberTable {
  /** @type {Map<string, Entry>} */
  #entries = new Map();
  #tbody = /** @type {HTMLTableSectionElement} */ (h('tbody'));
  #empty = h('p', { class: 'muted', text: 'No subscribers.' });
  #open = false;
  #onRemove;

  /** @param {(to: string, button: HTMLButtonElement) => void} onRemove */
  constructor(onRemove) {
    this.#onRemove = onRemove;
    this.element = h(
      'div',
      { class: 'subs-body' },
      h(
        'table',
        { class: 'subs' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { text: 'subscriber' }),
            h('th', { class: 'num', text: 'rate' }),
            h('th', { class: 'num', text: 'packets' }),
            h('th', { class: 'num', text: 'bytes' }),
            h('th', { text: 'drops' }),
            h('th', { text: 'state', title: 'ok, the last error (errno), or suspended' }),
            h('th'),
          ),
        ),
        this.#tbody,
      ),
      this.#empty,
    );
  }

  get size() {
    return this.#entries.size;
  }

  /** Subscribers now suspended, and those with a last error. */
  alerts() {
    let suspended = 0;
    let failing = 0;
    const now = Date.now();
    for (const { dest } of this.#entries.values()) {
      if (dest.suspendedUntil !== undefined && dest.suspendedUntil > now) suspended += 1;
      else if (dest.lastError) failing += 1;
    }
    return { suspended, failing };
  }

  /**
   * The flow's current destinations. With `dtS` (seconds since the previous
   * stats event) rates are computed; without (a FlowView from a request) only
   * the set of rows and their counters change.
   * @param {readonly Destination[]} destinations
   * @param {number | null} dtS
   */
  update(destinations, dtS) {
    const seen = new Set();
    for (const dest of destinations) {
      seen.add(dest.to);
      const entry = this.#entries.get(dest.to);
      if (entry) {
        // Counters from a request are not on the stats events' clock: rates come from stats events only.
        if (dtS === null) continue;
        entry.rate = perSecond(entry.dest.bytesOut, dest.bytesOut, dtS);
        entry.dest = dest;
      } else {
        this.#entries.set(dest.to, { dest, rate: null, row: null });
      }
    }
    for (const [to, entry] of this.#entries) {
      if (seen.has(to)) continue;
      entry.row?.remove();
      this.#entries.delete(to);
    }
    if (this.#open) this.#render();
  }

  /** @param {boolean} open */
  setOpen(open) {
    this.#open = open;
    if (open) this.#render();
  }

  #render() {
    this.#empty.hidden = this.#entries.size > 0;
    const now = Date.now();
    for (const entry of this.#entries.values()) {
      if (!entry.row) {
        entry.row = this.#row(entry.dest.to);
        this.#insert(entry.row, entry.dest.to);
      }
      const cells = /** @type {HTMLCollectionOf<HTMLTableCellElement>} */ (entry.row.cells);
      const { dest } = entry;
      setText(cells[1], bitRate(entry.rate));
      setText(cells[2], count(dest.packetsOut));
      setText(cells[3], bytes(dest.bytesOut));
      setText(cells[4], dropTotal(dest.drops) > 0 ? dropText(dest.drops) : '–');
      const suspended = dest.suspendedUntil !== undefined && dest.suspendedUntil > now;
      // The state column: ok, the errno of the last failed copy (e.g. ECONNREFUSED), or the suspension's end.
      const state = suspended ? `suspended until ${clock(dest.suspendedUntil ?? 0)}` : (dest.lastError ?? 'ok');
      setText(cells[5], suspended && dest.lastError ? `${state} (${dest.lastError})` : state);
      toggleClass(entry.row, 'suspended', suspended);
      toggleClass(entry.row, 'failing', !suspended && Boolean(dest.lastError));
    }
  }

  /** Rows stay in address order. @param {HTMLTableRowElement} row @param {string} to */
  #insert(row, to) {
    for (const other of this.#tbody.rows) {
      if ((other.dataset.to ?? '') > to) {
        other.before(row);
        return;
      }
    }
    this.#tbody.append(row);
  }

  /** @param {string} to */
  #row(to) {
    const button = /** @type {HTMLButtonElement} */ (
      h('button', { type: 'button', class: 'remove', text: IDLE, title: `Remove ${to}`, 'aria-label': `Remove ${to}` })
    );
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let disarm;
    button.addEventListener('click', () => {
      if (button.dataset.armed !== 'true') {
        button.dataset.armed = 'true';
        button.textContent = ARMED;
        disarm = setTimeout(() => {
          button.dataset.armed = 'false';
          button.textContent = IDLE;
        }, ARM_MS);
        return;
      }
      clearTimeout(disarm);
      button.dataset.armed = 'false';
      button.textContent = IDLE;
      this.#onRemove(to, button);
    });
    return /** @type {HTMLTableRowElement} */ (
      h(
        'tr',
        { dataset: { to } },
        h('td', { class: 'addr', text: to }),
        h('td', { class: 'num' }),
        h('td', { class: 'num' }),
        h('td', { class: 'num' }),
        h('td', { class: 'drops' }),
        h('td', { class: 'state' }),
        h('td', null, button),
      )
    );
  }
}
