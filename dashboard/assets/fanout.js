/**
 * The daemon's live fan-out (GET /v1/fanout, the serve config's `fanout:`
 * section; docs/FANOUT.md): where its fronts listen (the HTTP front, each
 * plain TCP listener with the input it serves), the interface groups are
 * joined on and what else a request may name; its failure if the fan-out
 * thread stopped; the front's counters (streams accepted, /status answers,
 * refusals by reason); the totals (clients, open inputs, bytes sent with
 * their rate between two reads, datagrams in, skipped chunks, clients
 * ended by reason); every input, configured or opened by a request, with its
 * clients, datagrams and bytes; every client (fanout-clients.js). The page
 * reads it every few seconds; the section stays hidden on a daemon without
 * a fan-out (the route answers 404).
 *
 * Addresses, inputs, the interface and the failure are text from the config
 * file and the fan-out thread: they reach the page as text only (dom.js).
 */
import { h, setText, toggleClass } from './dom.js';
import { bitRate, bytes, count } from './format.js';
import { dropText, dropTotal, perSecond } from './rates.js';
import { FanoutClientTable } from './fanout-clients.js';

/**
 * @typedef {{ key: string, clients?: number, datagrams?: number, bytes?: number, chunks?: number, badRtp?: number }} InputStats
 * @typedef {{ clients?: number, inputs?: number, bytesSent?: number, skippedChunks?: number, skippedBytes?: number,
 *   ended?: Record<string, number>, datagrams?: number }} Totals
 * @typedef {{ accepted?: number, status?: number, refused?: Record<string, number> }} Front
 * @typedef {{ http?: string, tcp?: { listen: string, input: string }[], inputs?: string[], allow?: string[], interface?: string }} FanoutConfig
 * @typedef {{ http?: string, tcp?: string[], config?: FanoutConfig, failure?: string,
 *   stats?: { front?: Front, totals?: Totals, inputs?: InputStats[], clients?: import('./fanout-clients.js').ClientStats[] } }} FanoutView
 * @typedef {{ row: HTMLTableRowElement, bytes: number | undefined, rate: number | null }} InputEntry
 */

/** @param {unknown} v */
const str = (v) => (v === undefined || v === null ? '' : String(v));
/** @param {unknown} v */
const list = (v) => (Array.isArray(v) ? v : []);
/** @param {unknown} v */
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const INPUT_HEAD = ['input', 'name', 'clients', 'datagrams', 'bytes', 'rate', 'bad RTP'];

/**
 * A configured input (`udp://…`, `rtp://…`, a bare `HOST:PORT`, or `NAME=` before one) as the fan-out's key.
 * @param {string} text
 * @returns {{ key: string, name: string }}
 */
export function configuredInput(text) {
  const m = /^([A-Za-z0-9_.-]{1,64})=(.*)$/.exec(text);
  const rest = (m ? m[2] : text).trim();
  const scheme = /^(udp|rtp):\/\//i.exec(rest);
  return { key: scheme ? `${scheme[1].toLowerCase()}://${rest.slice(scheme[0].length)}` : `udp://${rest}`, name: m ? m[1] : '' };
}

export class FanoutPanel {
  #section;
  #summary;
  #front = h('div', { class: 'fanout-front', dataset: { role: 'fanout-front' } });
  #failure = h('div', { class: 'error', role: 'alert', dataset: { role: 'fanout-failure' }, hidden: true });
  #totals = h('span', { class: 'totals', dataset: { role: 'fanout-totals' } });
  #refused = h('span', { class: 'drops', dataset: { role: 'fanout-refused' } });
  #inputBody = /** @type {HTMLTableSectionElement} */ (h('tbody'));
  #clients = new FanoutClientTable();
  /** @type {Map<string, InputEntry>} */
  #inputs = new Map();
  /** The front as last drawn (JSON): redrawn only when it changed. */
  #frontDrawn = '';
  /** @type {Totals | null} */
  #prevTotals = null;
  #prevT = 0;
  /** Refusals at the last read: a rise is marked. @type {number | null} */
  #prevRefused = null;

  /**
   * @param {HTMLElement} section shown only on a daemon with a fan-out
   * @param {HTMLElement} container
   * @param {HTMLElement} summary a line in the section's heading
   */
  constructor(section, container, summary) {
    this.#section = section;
    this.#summary = summary;
    container.append(
      h(
        'article',
        { class: 'fanout' },
        this.#front,
        this.#failure,
        h('div', { class: 'counts' }, this.#totals, this.#refused),
        h(
          'table',
          { class: 'fanout-inputs' },
          h('thead', null, h('tr', null, ...INPUT_HEAD.map((t, i) => h('th', { class: i >= 2 ? 'num' : null, text: t })))),
          this.#inputBody,
        ),
        this.#clients.element,
      ),
    );
  }

  /** No fan-out (or no longer known to have one). */
  hide() {
    this.#section.hidden = true;
    this.#prevTotals = null;
    this.#prevRefused = null;
  }

  /**
   * @param {FanoutView} view GET /v1/fanout
   * @param {number} tMs when it was read
   */
  update(view, tMs) {
    if (!view || typeof view !== 'object') return;
    this.#section.hidden = false;
    const config = view.config && typeof view.config === 'object' ? view.config : {};
    const stats = view.stats && typeof view.stats === 'object' ? view.stats : {};
    const dtS = this.#prevTotals ? (tMs - this.#prevT) / 1000 : null;
    this.#drawFront(view, config);
    const failure = str(view.failure);
    setText(this.#failure, failure ? `the fan-out stopped: ${failure}` : '');
    this.#failure.hidden = !failure;

    /** @type {Map<string, string>} */
    const names = new Map();
    for (const text of list(config.inputs)) {
      const { key, name } = configuredInput(str(text));
      if (name) names.set(key, name);
    }
    const totals = stats.totals ?? {};
    const rate = dtS === null ? null : perSecond(num(this.#prevTotals?.bytesSent), num(totals.bytesSent), dtS);
    this.#drawCounters(totals, stats.front ?? {}, rate);
    this.#drawInputs(
      list(stats.inputs),
      list(config.inputs).map((t) => configuredInput(str(t)).key),
      names,
      dtS,
    );
    this.#clients.update(list(stats.clients), dtS, names);
    const clients = num(totals.clients) ?? this.#clients.size;
    setText(this.#summary, `${count(clients)} client${clients === 1 ? '' : 's'} · ${count(this.#inputs.size)} input${this.#inputs.size === 1 ? '' : 's'}`);
    this.#prevTotals = totals;
    this.#prevT = tMs;
  }

  /**
   * @param {FanoutView} view
   * @param {FanoutConfig} config
   */
  #drawFront(view, config) {
    const tcp = list(view.tcp).map(str);
    const tcpConfig = list(config.tcp);
    const allow = list(config.allow).map(str);
    const text = JSON.stringify([view.http, tcp, tcpConfig, allow, config.interface]);
    if (text === this.#frontDrawn) return;
    this.#frontDrawn = text;
    /** @type {(Node | string)[]} */
    const parts = [];
    const sep = () => parts.length && parts.push(' · ');
    if (view.http) parts.push('HTTP front ', h('code', { dataset: { role: 'fanout-http' }, text: str(view.http) }));
    tcp.forEach((listen, i) => {
      sep();
      parts.push('TCP ', h('code', { dataset: { role: 'fanout-tcp' }, text: listen }), ' → ', h('code', { text: str(tcpConfig[i]?.input) || '?' }));
    });
    if (config.interface !== undefined) {
      sep();
      parts.push('groups joined on ', h('code', { dataset: { role: 'fanout-interface' }, text: str(config.interface) }));
    }
    sep();
    if (allow.length) parts.push('requests may also name ', h('code', { text: allow.join(', ') }));
    else parts.push('configured inputs only');
    this.#front.replaceChildren(...parts);
  }

  /**
   * @param {Totals} t
   * @param {Front} front
   * @param {number | null} rate bytes sent per second since the last read
   */
  #drawCounters(t, front, rate) {
    const ended = dropText(t.ended);
    setText(
      this.#totals,
      [
        `sent ${bytes(num(t.bytesSent) ?? NaN)} (${bitRate(rate)})`,
        `datagrams in ${count(num(t.datagrams))}`,
        `skipped ${count(num(t.skippedChunks))} chunks, ${bytes(num(t.skippedBytes) ?? NaN)}`,
        `streams accepted ${count(num(front.accepted))}`,
        `/status ${count(num(front.status))}`,
        ended ? `ended: ${ended}` : '',
      ]
        .filter(Boolean)
        .join(' · '),
    );
    const refused = dropText(front.refused);
    setText(this.#refused, refused ? `refused: ${refused}` : 'no refusals');
    toggleClass(this.#refused, 'has-drops', refused !== '');
    toggleClass(this.#refused, 'rising', this.#prevRefused !== null && dropTotal(front.refused) > this.#prevRefused);
    this.#prevRefused = dropTotal(front.refused);
  }

  /**
   * The open inputs, and the configured ones no client watches now (closed: no socket, no counters).
   * @param {InputStats[]} open
   * @param {string[]} configured their keys
   * @param {Map<string, string>} names
   * @param {number | null} dtS
   */
  #drawInputs(open, configured, names, dtS) {
    /** @type {Map<string, InputStats | null>} */
    const rows = new Map();
    for (const input of open) if (input && typeof input.key === 'string') rows.set(input.key, input);
    for (const key of configured) if (!rows.has(key)) rows.set(key, null);
    for (const [key, entry] of this.#inputs) {
      if (rows.has(key)) continue;
      entry.row.remove();
      this.#inputs.delete(key);
    }
    for (const [key, input] of rows) {
      let entry = this.#inputs.get(key);
      if (!entry) {
        const row = /** @type {HTMLTableRowElement} */ (
          h(
            'tr',
            { dataset: { input: key } },
            h('td', { class: 'addr', text: key }),
            h('td', { class: 'addr', dataset: { role: 'input-name' } }),
            ...Array.from({ length: 5 }, (_, i) => h('td', { class: 'num', dataset: { role: ['clients', 'datagrams', 'bytes', 'rate', 'bad-rtp'][i] } })),
          )
        );
        entry = { row, bytes: undefined, rate: null };
        this.#inputs.set(key, entry);
        this.#inputBody.append(row);
      }
      const b = num(input?.bytes);
      entry.rate = dtS === null || !input ? null : perSecond(entry.bytes, b, dtS);
      entry.bytes = b;
      const c = entry.row.cells;
      setText(c[1], names.get(key) ?? '');
      setText(c[2], input ? count(num(input.clients)) : 'closed');
      setText(c[3], input ? count(num(input.datagrams)) : '–');
      setText(c[4], b === undefined ? '–' : bytes(b));
      c[4].title = b === undefined ? '' : `${count(b)} bytes`;
      setText(c[5], input ? bitRate(entry.rate) : '–');
      setText(c[6], input ? count(num(input.badRtp)) : '–');
      toggleClass(entry.row, 'idle', !input);
    }
  }
}
