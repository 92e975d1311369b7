/**
 * The daemon's tcp-redirect flows (the entries of GET /v1/flows with `type:
 * 'tcp-redirect'`), one card each, kept in name order and keyed by name: the
 * listen address and where it joins to, the path that moves the bytes (its
 * `mode`) and where the flow comes from (`source`), the connections open now
 * and joined in all, the bytes each way with their rates between two reads
 * (the stats events carry no tcp-redirect: the page reads the list every few
 * seconds), the refusals, the kernel's share on the sockmap path, and the
 * failure of a path that stopped. The section stays hidden while there is none.
 *
 * Every string of a view (names, addresses, mode, source, failure) reaches the
 * page as text only (dom.js).
 */
import { h, insertSorted, setText, toggleClass } from './dom.js';
import { bitRate, bytes, count, percent } from './format.js';
import { dropText, perSecond } from './rates.js';

/**
 * @typedef {{ kernelBytes?: number, userBytes?: number, throttles?: number, fallbackPairs?: number }} SockmapStats
 * @typedef {{ accepted?: number, refused?: Record<string, number>, upstreamFailed?: number, active?: number, closed?: number,
 *   resets?: number, idleClosed?: number, bytesToUpstream?: number, bytesToClient?: number, sockmap?: SockmapStats }} TcpStats
 * @typedef {{ name: string, type?: string, listen?: string, to?: string, mode?: string, source?: string, stats?: TcpStats,
 *   failure?: string }} TcpFlowView
 */

/** @param {unknown} v */
const str = (v) => (v === undefined || v === null ? '' : String(v));
/** @param {unknown} v */
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
/** A byte count as an operator reads it; the exact count in the title. @param {HTMLElement} el @param {number | undefined} n */
function showBytes(el, n) {
  setText(el, n === undefined ? '–' : bytes(n));
  const title = n === undefined ? '' : `${count(n)} bytes`;
  if (el.title !== title) el.title = title;
}

/** Whether a view is a tcp-redirect's (GET /v1/flows lists them with the UDP flows). @param {any} view */
export const isTcpView = (view) => Boolean(view) && typeof view === 'object' && view.type === 'tcp-redirect' && typeof view.name === 'string';

class TcpRelayCard {
  /** @type {TcpStats | null} */
  #prev = null;
  #prevT = 0;
  #el;

  /** @param {string} name */
  constructor(name) {
    this.name = name;
    this.#el = {
      mode: h('span', { class: 'badge', dataset: { role: 'mode' }, title: 'the path that moves the bytes' }),
      source: h('span', { class: 'badge tier', dataset: { role: 'source' }, title: 'where the flow comes from' }),
      route: h('span', { class: 'addr listen', dataset: { role: 'route' } }),
      upRate: h('span', { class: 'big', dataset: { role: 'up-rate' }, text: '–' }),
      downRate: h('span', { class: 'big', dataset: { role: 'down-rate' }, text: '–' }),
      active: h('span', { class: 'big', dataset: { role: 'active' }, text: '–' }),
      accepted: h('span', { dataset: { role: 'accepted' } }),
      ended: h('span'),
      upBytes: h('span', { dataset: { role: 'up-bytes' } }),
      downBytes: h('span', { dataset: { role: 'down-bytes' } }),
      refused: h('div', { class: 'drops', dataset: { role: 'refused' } }),
      sockmap: h('div', { class: 'media', dataset: { role: 'sockmap' }, hidden: true }),
      failure: h('div', { class: 'error', role: 'alert', dataset: { role: 'failure' }, hidden: true }),
    };
    const el = this.#el;
    this.element = h(
      'article',
      { class: 'flow tcp-relay', dataset: { tcpFlow: name } },
      h('header', null, h('h3', { class: 'flow-name', text: name }), h('span', { class: 'badge', text: 'tcp-redirect' }), el.mode, el.source, el.route),
      h(
        'div',
        { class: 'rates' },
        h('div', { class: 'rate in', title: 'client → upstream' }, h('span', { class: 'label', text: 'to upstream' }), el.upRate),
        h('div', { class: 'rate out', title: 'upstream → client' }, h('span', { class: 'label', text: 'to client' }), el.downRate),
        h('div', { class: 'rate conns' }, h('span', { class: 'label', text: 'open' }), el.active),
      ),
      h(
        'div',
        { class: 'counts' },
        h('span', { class: 'totals' }, 'connections joined ', el.accepted, el.ended),
        h('span', { class: 'totals' }, 'bytes to upstream ', el.upBytes, ' · to client ', el.downBytes),
      ),
      el.refused,
      el.sockmap,
      el.failure,
    );
  }

  /**
   * @param {TcpFlowView} view
   * @param {number} tMs when it was read
   */
  show(view, tMs) {
    const el = this.#el;
    const mode = str(view.mode ?? /** @type {any} */ (view.stats)?.mode);
    setText(el.mode, mode);
    el.mode.hidden = !mode;
    setText(el.source, view.source === undefined ? '' : `source ${str(view.source)}`);
    el.source.hidden = view.source === undefined;
    setText(el.route, `${str(view.listen) || '?'} → ${str(view.to) || '?'}`);
    const failure = str(view.failure);
    setText(el.failure, failure ? `failed: ${failure}` : '');
    el.failure.hidden = !failure;
    toggleClass(this.element, 'alarm', Boolean(failure));
    const s = view.stats && typeof view.stats === 'object' ? view.stats : null;
    if (!s) return;
    const prev = this.#prev;
    const dtS = prev ? (tMs - this.#prevT) / 1000 : 0;
    setText(el.upRate, bitRate(prev ? perSecond(num(prev.bytesToUpstream), num(s.bytesToUpstream), dtS) : null));
    setText(el.downRate, bitRate(prev ? perSecond(num(prev.bytesToClient), num(s.bytesToClient), dtS) : null));
    setText(el.active, count(num(s.active)));
    setText(el.accepted, count(num(s.accepted)));
    setText(el.ended, ` · closed ${count(num(s.closed))} · resets ${count(num(s.resets))} · idle closed ${count(num(s.idleClosed))}`);
    showBytes(el.upBytes, num(s.bytesToUpstream));
    showBytes(el.downBytes, num(s.bytesToClient));
    this.#showRefused(s, prev);
    this.#showSockmap(s.sockmap);
    this.#prev = s;
    this.#prevT = tMs;
  }

  /**
   * Refused at accept (by reason) and joins that could not reach `to`.
   * @param {TcpStats} s
   * @param {TcpStats | null} prev
   */
  #showRefused(s, prev) {
    /** @type {Record<string, number>} */
    const all = {};
    if (s.refused && typeof s.refused === 'object') for (const [k, v] of Object.entries(s.refused)) if (num(v) !== undefined) all[k] = v;
    const failed = num(s.upstreamFailed) ?? 0;
    if (failed > 0) all.upstreamFailed = failed;
    const text = dropText(all);
    setText(this.#el.refused, text ? `refused: ${text}` : 'no refusals');
    toggleClass(this.#el.refused, 'has-drops', text !== '');
    const total = (/** @type {TcpStats | null} */ t) =>
      t ? Object.values(t.refused ?? {}).reduce((a, v) => a + (num(v) ?? 0), 0) + (num(t.upstreamFailed) ?? 0) : 0;
    toggleClass(this.#el.refused, 'rising', prev !== null && total(s) > total(prev));
  }

  /** The sockmap path's split: bytes the kernel moved itself and those that went through Node. @param {SockmapStats | undefined} m */
  #showSockmap(m) {
    const el = this.#el.sockmap;
    el.hidden = !m || typeof m !== 'object';
    if (!m || el.hidden) return;
    const kernel = num(m.kernelBytes) ?? 0;
    const user = num(m.userBytes) ?? 0;
    const share = kernel + user > 0 ? ` (${percent(kernel / (kernel + user))})` : '';
    setText(
      el,
      `sockmap: in the kernel ${bytes(kernel)}${share} · through Node ${bytes(user)} · throttles ${count(num(m.throttles))} · pairs left to user space ${count(num(m.fallbackPairs))}`,
    );
  }
}

export class TcpRelayList {
  /** @type {Map<string, TcpRelayCard>} */
  #cards = new Map();
  #section;
  #container;
  #countEl;

  /**
   * @param {HTMLElement} section shown only while there is a tcp-redirect
   * @param {HTMLElement} container
   * @param {HTMLElement} countEl
   */
  constructor(section, container, countEl) {
    this.#section = section;
    this.#container = container;
    this.#countEl = countEl;
  }

  get size() {
    return this.#cards.size;
  }

  /**
   * The full list (GET /v1/flows, tcp-redirects only): cards not in it are dropped.
   * @param {readonly TcpFlowView[]} views
   * @param {number} tMs when it was read
   */
  sync(views, tMs) {
    const names = new Set(views.filter(isTcpView).map((v) => v.name));
    for (const name of [...this.#cards.keys()]) if (!names.has(name)) this.remove(name);
    for (const view of views) this.upsert(view, tMs);
  }

  /**
   * One view: from the list, or a flowadded / flowchanged event.
   * @param {TcpFlowView} view
   * @param {number} tMs
   */
  upsert(view, tMs) {
    if (!isTcpView(view)) return;
    let card = this.#cards.get(view.name);
    if (!card) {
      card = new TcpRelayCard(view.name);
      this.#cards.set(view.name, card);
      insertSorted(this.#container, card.element, 'data-tcp-flow', card.name);
      this.#changed();
    }
    card.show(view, tMs);
  }

  /** @param {string} name @returns {boolean} whether it had a card */
  remove(name) {
    const card = this.#cards.get(name);
    if (!card) return false;
    card.element.remove();
    this.#cards.delete(name);
    this.#changed();
    return true;
  }

  #changed() {
    setText(this.#countEl, `(${this.#cards.size})`);
    this.#section.hidden = this.#cards.size === 0;
  }
}
