/**
 * Building DOM without HTML strings. Everything shown on the page that comes
 * from the daemon (flow names, addresses, error messages) is untrusted text:
 * it only ever reaches the DOM through textContent or an attribute value, never
 * through innerHTML.
 */

/**
 * h('td', { class: 'num', title: 'x', dataset: { to } }, 'text', childNode)
 * @param {string} tag
 * @param {Record<string, unknown> | null} [props]
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = String(value);
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key === 'text') el.textContent = String(value);
      else if (key.startsWith('on')) {
        // Handlers are functions, never attribute text (which the CSP would refuse anyway).
        if (typeof value !== 'function') throw new TypeError(`h(): ${key} must be a function`);
        el.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
      } else if (value === true) el.setAttribute(key, '');
      else el.setAttribute(key, String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'object' ? child : String(child));
  }
  return el;
}

/**
 * Sets an element's text only when it changed: most cells keep their value from
 * one second to the next, and an unchanged write still costs a layout.
 * @param {Element} el
 * @param {string} text
 */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Inserts `el` among `container`'s children, which are kept sorted by the
 * attribute `attr` (a card's name): before the first whose value sorts after `key`.
 * @param {Element} container
 * @param {Element} el
 * @param {string} attr
 * @param {string} key
 */
export function insertSorted(container, el, attr, key) {
  for (const child of container.children) {
    if ((child.getAttribute(attr) ?? '') > key) {
      child.before(el);
      return;
    }
  }
  container.append(el);
}

/**
 * @param {Element} el
 * @param {string} name
 * @param {boolean} on
 */
export function toggleClass(el, name, on) {
  if (el.classList.contains(name) !== on) el.classList.toggle(name, on);
}
