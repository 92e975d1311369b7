/**
 * One flow on the page: its name, type, tier and listen address; in and out
 * rates (bits and packets per second) from consecutive stats events; its
 * rate chart; drops by reason; its subscribers (SubscriberTable) and a form
 * to add one. The card is built once and then only its text changes.
 */
import { h, setText, toggleClass } from './dom.js';
import { bitRate, count, packetRate } from './format.js';
import { dropText, dropTotal, perSecond } from './rates.js';
import { RateChart } from './chart.js';
import { AUTO_COLLAPSE, SubscriberTable } from './subscribers.js';
import { showError } from './errors.js';
import { mediaSummary } from './media.js';

/**
 * @typedef {{ name: string, packetsIn: number, bytesIn: number, packetsOut: number, bytesOut: number,
 *   drops?: Record<string, number>, destinations?: import('./subscribers.js').Destination[],
 *   media?: import('./media.js').MediaFigures }} FlowCounters
 * @typedef {FlowCounters & { type?: string, tier?: string, listen?: string }} FlowStats
 * @typedef {{ name: string, type?: string, tier?: string, listen?: string, policy?: unknown, stats?: FlowStats }} FlowView
 * @typedef {ReturnType<typeof import('./api.js').createApi>} Api
 */

export class FlowCard {
  /** @type {FlowCounters | null} */
  #prev = null;
  #prevT = 0;
  #api;
  #name;
  #chart;
  #subs;
  /** The user opened or closed the list: from then on it stays as they left it. */
  #userToggled = false;
  #settingOpen = false;
  #el;

  /**
   * @param {FlowView} view
   * @param {Api} api
   */
  constructor(view, api) {
    this.#name = view.name;
    this.#api = api;
    const chartBox = h('div', { class: 'chart' });
    this.#subs = new SubscriberTable((to, button) => void this.#remove(to, button));
    this.#el = {
      type: h('span', { class: 'badge' }),
      tier: h('span', { class: 'badge tier' }),
      listen: h('span', { class: 'addr listen' }),
      inBits: h('span', { class: 'big', dataset: { role: 'in-rate' }, text: '–' }),
      inPkts: h('span', { class: 'small', text: '–' }),
      outBits: h('span', { class: 'big', dataset: { role: 'out-rate' }, text: '–' }),
      outPkts: h('span', { class: 'small', text: '–' }),
      totals: h('div', { class: 'totals muted' }),
      drops: h('div', { class: 'drops' }),
      media: h('div', { class: 'media', dataset: { role: 'media' }, hidden: true }),
      alarms: h('div', { class: 'media-alarms', dataset: { role: 'media-alarms' } }),
      summary: h('summary'),
      subCount: h('span', { dataset: { role: 'subscriber-count' } }),
      subAlerts: h('span', { class: 'alerts' }),
      details: /** @type {HTMLDetailsElement} */ (h('details', { class: 'subscribers' })),
      form: /** @type {HTMLFormElement} */ (h('form', { class: 'add-sub' })),
      formError: h('div', { class: 'error', role: 'alert', hidden: true }),
    };
    const el = this.#el;
    el.summary.append('Subscribers ', el.subCount, ' ', el.subAlerts);
    el.details.append(el.summary, this.#subs.element);
    el.details.addEventListener('toggle', () => {
      if (!this.#settingOpen) this.#userToggled = true;
      this.#subs.setOpen(el.details.open);
    });
    const input = /** @type {HTMLInputElement} */ (
      h('input', {
        name: 'to',
        type: 'text',
        required: true,
        placeholder: 'udp://HOST:PORT',
        autocomplete: 'off',
        spellcheck: 'false',
        'aria-label': 'subscriber address',
      })
    );
    const submit = /** @type {HTMLButtonElement} */ (h('button', { type: 'submit', text: 'Add subscriber' }));
    el.form.append(input, submit, el.formError);
    el.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.#add(input, submit);
    });

    this.element = h(
      'article',
      { class: 'flow', dataset: { flow: view.name } },
      h('header', null, h('h3', { class: 'flow-name', text: view.name }), el.type, el.tier, el.listen),
      h(
        'div',
        { class: 'rates' },
        h('div', { class: 'rate in' }, h('span', { class: 'label', text: 'in' }), el.inBits, el.inPkts),
        h('div', { class: 'rate out' }, h('span', { class: 'label', text: 'out' }), el.outBits, el.outPkts),
      ),
      chartBox,
      h('div', { class: 'counts' }, el.drops, el.totals),
      el.media,
      el.alarms,
      el.details,
      el.form,
    );
    this.#chart = new RateChart(chartBox);
    this.applyView(view);
    this.#setOpen(this.#subs.size <= AUTO_COLLAPSE);
  }

  get name() {
    return this.#name;
  }

  /** A FlowView from a request or a flowadded/flowchanged event: everything but rates. @param {FlowView} view */
  applyView(view) {
    const stats = view.stats;
    const el = this.#el;
    const type = view.type ?? stats?.type ?? '';
    setText(el.type, type);
    el.type.hidden = !type;
    setText(el.tier, view.tier ?? stats?.tier ?? '');
    el.tier.hidden = !(view.tier ?? stats?.tier);
    setText(el.listen, view.listen ?? stats?.listen ?? '');
    // A redirect has its one destination; subscribers are added to replicate flows.
    el.form.hidden = type === 'redirect';
    if (stats) this.#showCounters(stats, null);
  }

  /**
   * One flow's entry of a stats event.
   * @param {FlowCounters} counters
   * @param {number} tMs the event's time
   */
  applyStats(counters, tMs) {
    const prev = this.#prev;
    const dtS = prev ? (tMs - this.#prevT) / 1000 : 0;
    const rIn = prev ? perSecond(prev.bytesIn, counters.bytesIn, dtS) : null;
    const rOut = prev ? perSecond(prev.bytesOut, counters.bytesOut, dtS) : null;
    setText(this.#el.inBits, bitRate(rIn));
    setText(this.#el.outBits, bitRate(rOut));
    setText(this.#el.inPkts, packetRate(prev ? perSecond(prev.packetsIn, counters.packetsIn, dtS) : null));
    setText(this.#el.outPkts, packetRate(prev ? perSecond(prev.packetsOut, counters.packetsOut, dtS) : null));
    this.#chart.push(tMs / 1000, rIn, rOut);
    this.#showCounters(counters, prev ? dtS : null);
    this.#prev = counters;
    this.#prevT = tMs;
  }

  /** @param {string} query */
  filter(query) {
    this.element.hidden = query !== '' && !this.#name.toLowerCase().includes(query);
  }

  destroy() {
    this.#chart.destroy();
    this.element.remove();
  }

  /**
   * @param {FlowCounters} c
   * @param {number | null} dtS
   */
  #showCounters(c, dtS) {
    const el = this.#el;
    setText(el.totals, `packets in ${count(c.packetsIn)} · out ${count(c.packetsOut)}`);
    const dropped = dropTotal(c.drops);
    setText(el.drops, dropped > 0 ? `drops: ${dropText(c.drops)}` : 'no drops');
    toggleClass(el.drops, 'has-drops', dropped > 0);
    const rising = dtS !== null && this.#prev !== null && dropped > dropTotal(this.#prev.drops);
    toggleClass(el.drops, 'rising', rising);
    const media = mediaSummary(c.media);
    setText(el.media, media.text);
    el.media.hidden = !c.media;
    el.alarms.replaceChildren(...media.alarms.map((kind) => h('span', { class: 'badge alarm', text: kind })));
    this.#subs.update(c.destinations ?? [], dtS);
    setText(el.subCount, `(${this.#subs.size})`);
    const { suspended, failing } = this.#subs.alerts();
    const alerts = [suspended ? `${suspended} suspended` : '', failing ? `${failing} with errors` : ''].filter(Boolean).join(', ');
    setText(el.subAlerts, alerts);
    toggleClass(this.element, 'alarm', suspended + failing + media.alarms.length > 0);
    if (!this.#userToggled) this.#setOpen(this.#subs.size <= AUTO_COLLAPSE);
  }

  /** @param {boolean} open */
  #setOpen(open) {
    if (this.#el.details.open === open) return;
    this.#settingOpen = true;
    this.#el.details.open = open;
    this.#subs.setOpen(open);
    // The toggle event is dispatched asynchronously: clear the flag after it.
    setTimeout(() => (this.#settingOpen = false), 0);
  }

  /**
   * @param {HTMLInputElement} input
   * @param {HTMLButtonElement} submit
   */
  async #add(input, submit) {
    const to = input.value.trim();
    if (!to) return;
    submit.disabled = true;
    showError(this.#el.formError, null);
    try {
      const view = await this.#api.addSubscriber(this.#name, to);
      input.value = '';
      if (view && typeof view === 'object' && view.stats) this.applyView(view);
    } catch (err) {
      showError(this.#el.formError, err);
    } finally {
      submit.disabled = false;
    }
  }

  /**
   * @param {string} to
   * @param {HTMLButtonElement} button
   */
  async #remove(to, button) {
    button.disabled = true;
    showError(this.#el.formError, null);
    try {
      const view = await this.#api.removeSubscriber(this.#name, to);
      if (view && typeof view === 'object' && view.stats) this.applyView(view);
    } catch (err) {
      showError(this.#el.formError, err);
      button.disabled = false;
    }
  }
}
