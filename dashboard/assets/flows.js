/**
 * Every flow as a card, kept in name order and keyed by name. Cards come and
 * go with the snapshot taken at each (re)connection, flowadded / flowchanged /
 * flowremoved events, and the stats events: a stats event lists every flow,
 * so a flow it names that the page does not know is added (its details then
 * fetched), and a card missing from two stats events in a row is dropped.
 */
import { FlowCard } from './flow-card.js';
import { eventTimeMs } from './rates.js';
import { insertSorted, setText } from './dom.js';

/**
 * @typedef {import('./flow-card.js').FlowView} FlowView
 * @typedef {import('./flow-card.js').FlowCounters} FlowCounters
 * @typedef {import('./flow-card.js').Api} Api
 */

export class FlowList {
  /** @type {Map<string, FlowCard>} */
  #cards = new Map();
  /** Cards absent from the last stats event. @type {Set<string>} */
  #missing = new Set();
  /** Flows whose details were asked for. @type {Set<string>} */
  #asked = new Set();
  #container;
  #api;
  #query = '';
  #countEl;
  #emptyEl;

  /**
   * @param {HTMLElement} container
   * @param {HTMLElement} countEl
   * @param {HTMLElement} emptyEl shown when there is no flow
   * @param {Api} api
   */
  constructor(container, countEl, emptyEl, api) {
    this.#container = container;
    this.#countEl = countEl;
    this.#emptyEl = emptyEl;
    this.#api = api;
  }

  get size() {
    return this.#cards.size;
  }

  /** The full list (GET /v1/flows): cards not in it are dropped. @param {readonly FlowView[]} views */
  sync(views) {
    const names = new Set(views.map((v) => v.name));
    for (const name of [...this.#cards.keys()]) if (!names.has(name)) this.remove(name);
    for (const view of views) this.upsert(view);
  }

  /** @param {FlowView} view */
  upsert(view) {
    if (!view || typeof view.name !== 'string') return;
    const card = this.#cards.get(view.name);
    if (card) {
      card.applyView(view);
      return;
    }
    const created = new FlowCard(view, this.#api);
    created.filter(this.#query);
    this.#cards.set(view.name, created);
    insertSorted(this.#container, created.element, 'data-flow', created.name);
    this.#changed();
  }

  /** @param {string} name */
  remove(name) {
    const card = this.#cards.get(name);
    if (!card) return;
    card.destroy();
    this.#cards.delete(name);
    this.#missing.delete(name);
    this.#asked.delete(name);
    this.#changed();
  }

  /** @param {{ t?: unknown, flows?: FlowCounters[] }} event */
  applyStats(event) {
    if (!Array.isArray(event.flows)) return;
    const tMs = eventTimeMs(event.t);
    const seen = new Set();
    for (const counters of event.flows) {
      if (!counters || typeof counters.name !== 'string') continue;
      seen.add(counters.name);
      if (!this.#cards.has(counters.name)) {
        this.upsert({ name: counters.name });
        this.#fetchDetails(counters.name);
      }
      this.#cards.get(counters.name)?.applyStats(counters, tMs);
    }
    for (const name of [...this.#cards.keys()]) {
      if (seen.has(name)) this.#missing.delete(name);
      else if (this.#missing.has(name)) this.remove(name);
      else this.#missing.add(name);
    }
  }

  /** @param {string} query */
  setFilter(query) {
    this.#query = query.trim().toLowerCase();
    for (const card of this.#cards.values()) card.filter(this.#query);
  }

  /** @param {string} name */
  #fetchDetails(name) {
    if (this.#asked.has(name)) return;
    this.#asked.add(name);
    this.#api
      .request('GET', `/v1/flows/${encodeURIComponent(name)}`)
      .then((/** @type {FlowView} */ view) => {
        if (this.#cards.has(name)) this.upsert(view);
      })
      .catch(() => {});
  }

  #changed() {
    setText(this.#countEl, `(${this.#cards.size})`);
    this.#emptyEl.hidden = this.#cards.size > 0;
  }
}
