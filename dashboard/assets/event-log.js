/**
 * What changed, newest first: flows and subscribers added and removed,
 * suspensions, peers up and down, alarms and engine failures. The last
 * LOG_SIZE entries are kept.
 */
import { h } from './dom.js';
import { clock } from './format.js';

const LOG_SIZE = 50;

/**
 * One line of text for an event, and whether it is bad news.
 * @param {string} type
 * @param {any} d
 * @returns {[string, boolean] | null}
 */
export function describe(type, d) {
  const s = (/** @type {unknown} */ v) => (v === undefined || v === null ? '?' : String(v));
  switch (type) {
    case 'flowadded':
      return [`flow ${s(d.flow?.name)} added (${s(d.flow?.type)}, ${s(d.flow?.listen)})`, false];
    case 'flowremoved':
      return [`flow ${s(d.name)} removed`, false];
    case 'flowchanged':
      return [`flow ${s(d.flow?.name)} changed`, false];
    case 'subscriberadded':
      return [`${s(d.flow)}: subscriber ${s(d.to)} added`, false];
    case 'subscriberremoved':
      return [`${s(d.flow)}: subscriber ${s(d.to)} removed`, false];
    case 'subscribersuspended':
      // until 0: the subscriber was tried again and resumed.
      if (d.until === 0) return [`${s(d.flow)}: subscriber ${s(d.to)} resumed`, false];
      return [`${s(d.flow)}: subscriber ${s(d.to)} suspended${typeof d.until === 'number' ? ` until ${clock(d.until)}` : ''}`, true];
    case 'peerup':
      return [`${s(d.gateway)}: peer ${s(d.peer)} up`, false];
    case 'peerdown':
      return [`${s(d.gateway)}: peer ${s(d.peer)} down${d.reason ? ` (${s(d.reason)})` : ''}`, true];
    case 'tpochanged':
      if (d.change === 'peeradded') return [`${s(d.gateway)}: peer ${s(d.peer?.name)} added`, false];
      if (d.change === 'peerremoved') return [`${s(d.gateway)}: peer ${s(d.name)} removed (${s(d.flowsReset)} flows reset)`, false];
      if (d.change === 'tableentryadded') return [`${s(d.gateway)}: table entry ${s(d.entry?.name)} added`, false];
      if (d.change === 'tableentryremoved') return [`${s(d.gateway)}: table entry ${s(d.name)} removed (${s(d.flowsEnded)} flows ended)`, false];
      return [`${s(d.gateway)}: ${s(d.change)}`, false];
    case 'alarm':
      return [`alarm from ${s(d.source)}: ${s(d.kind)}${d.message ? ` — ${s(d.message)}` : ''}`, true];
    case 'enginefailed':
      return [`engine ${s(d.engine)} failed: ${s(d.message)}`, true];
    case 'sendstarted':
      return [`send ${s(d.id)} started`, false];
    case 'senddone':
      return [`send ${s(d.id)} ${s(d.state ?? 'done')}`, d.state === 'failed'];
    default:
      return null;
  }
}

export class EventLog {
  #list;

  /** @param {HTMLElement} list an <ol> */
  constructor(list) {
    this.#list = list;
  }

  /**
   * @param {string} type
   * @param {unknown} data
   */
  add(type, data) {
    const line = describe(type, data ?? {});
    if (line) this.note(line[0], line[1]);
  }

  /**
   * @param {string} text
   * @param {boolean} [bad]
   */
  note(text, bad = false) {
    const item = h('li', { class: bad ? 'bad' : null }, h('time', { text: clock(Date.now()) }), ' ', text);
    this.#list.prepend(item);
    while (this.#list.children.length > LOG_SIZE) this.#list.lastElementChild?.remove();
  }
}
