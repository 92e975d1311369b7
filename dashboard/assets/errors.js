/** Showing an API error where the user acted: its message, its code and the field paths it names. */
import { h } from './dom.js';
import { ApiError } from './api.js';

/**
 * @param {HTMLElement} box an element with role="alert"; hidden when err is null
 * @param {unknown} err
 */
export function showError(box, err) {
  box.replaceChildren();
  box.hidden = err === null || err === undefined;
  if (box.hidden) return;
  if (err instanceof ApiError) {
    box.append(h('span', { class: 'message', text: err.message }), ' ', h('code', { class: 'code', text: err.code }));
    if (err.issues.length > 0) {
      box.append(h('ul', null, ...err.issues.map((i) => h('li', null, i.path ? h('code', { text: i.path }) : null, i.path ? ': ' : '', i.message))));
    }
  } else {
    box.append(h('span', { class: 'message', text: err instanceof Error ? err.message : String(err) }));
  }
}
