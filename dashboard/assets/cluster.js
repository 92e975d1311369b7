/**
 * The cluster as this node sees it (GET /v1/cluster, `sluice serve
 * --cluster`): the node's name, its link to the store (connected, or lost
 * since when) and its lease; every live node with its lease and the load the
 * plan gives it against its capacity; every cluster flow with its ingest
 * primary and backup (which one is active) and, per subscriber, the node
 * that serves it (those served by this node marked). The section stays
 * hidden on a daemon that is not a cluster node (the route answers 404).
 *
 * Node names, addresses, versions and subscribers come from the store, where
 * anyone with access to etcd can write: they only reach the page as text or
 * attribute values (dom.js), never as HTML, and never as a link.
 */
import { h, setText } from './dom.js';
import { clock, count, percent } from './format.js';
import { AUTO_COLLAPSE } from './subscribers.js';

/**
 * @typedef {{ name: string, address?: string, tier?: string, capacity?: number, load?: number, lease?: string, api?: string,
 *   version?: string, startedAt?: string }} NodeView
 * @typedef {{ name: string, ingest?: { primary?: string, backup?: string, port?: number }, relayPort?: number, activeIngest?: string | null,
 *   edges?: string[], subscribers?: { to: string, node: string | null }[] }} FlowView
 * @typedef {{ node?: string, address?: string, storeUp?: boolean, storeDownSince?: string | null, registered?: boolean, lease?: string | null,
 *   leaseTtlS?: number, appliedRevision?: string, localFlows?: string[], failed?: { name: string, message: string }[] }} SelfView
 * @typedef {{ revision?: string, nodes?: NodeView[], flows?: FlowView[], refused?: { key: string, reason: string }[], self?: SelfView }} ClusterStatus
 */

/** @param {unknown} v */
const str = (v) => (v === undefined || v === null ? '' : String(v));
/** @param {unknown} v */
const list = (v) => (Array.isArray(v) ? v : []);
/** @param {unknown} v */
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

export class ClusterPanel {
  #section;
  #container;
  #summary;
  /** The last status drawn (as JSON): an unchanged one is not drawn again. */
  #drawn = '';
  /** Subscriber lists the user opened or closed, by flow: kept across redraws. @type {Map<string, boolean>} */
  #open = new Map();

  /**
   * @param {HTMLElement} section shown only on a cluster node
   * @param {HTMLElement} container
   * @param {HTMLElement} summary a line in the section's heading
   */
  constructor(section, container, summary) {
    this.#section = section;
    this.#container = container;
    this.#summary = summary;
  }

  /** Not a cluster node (or no longer known to be one). */
  hide() {
    this.#section.hidden = true;
    this.#container.replaceChildren();
    this.#drawn = '';
  }

  /** @param {ClusterStatus} status GET /v1/cluster */
  update(status) {
    if (!status || typeof status !== 'object') return;
    this.#section.hidden = false;
    const text = JSON.stringify(status);
    if (text === this.#drawn) return;
    this.#drawn = text;
    const self = status.self ?? {};
    const me = str(self.node);
    const nodes = list(status.nodes).filter((n) => n && typeof n.name === 'string');
    const flows = list(status.flows).filter((f) => f && typeof f.name === 'string');
    setText(this.#summary, `${nodes.length} node${nodes.length === 1 ? '' : 's'} · ${flows.length} flow${flows.length === 1 ? '' : 's'}`);
    this.#container.replaceChildren(
      this.#selfLine(self, str(status.revision)),
      ...this.#problems(list(status.refused), list(self.failed)),
      this.#nodeTable(nodes, me),
      flows.length ? h('div', { class: 'cluster-flows' }, ...flows.map((f) => this.#flow(f, me))) : h('p', { class: 'muted', text: 'No cluster flow.' }),
    );
  }

  /**
   * @param {SelfView} self
   * @param {string} revision
   */
  #selfLine(self, revision) {
    const up = self.storeUp !== false;
    const since = self.storeDownSince ? Date.parse(self.storeDownSince) : NaN;
    const store = up ? 'store connected' : `store lost${Number.isFinite(since) ? ` since ${clock(since)}` : ''} — forwarding the last assignment`;
    const lease = self.registered ? `lease ${str(self.lease)}${num(self.leaseTtlS) ? ` (${self.leaseTtlS} s)` : ''}` : 'registering again (no lease)';
    return h(
      'div',
      { class: 'cluster-self', dataset: { role: 'cluster-self', store: up ? 'up' : 'down' } },
      'this node ',
      h('strong', { class: 'addr', dataset: { role: 'self-node' }, text: str(self.node) }),
      self.address ? h('span', { class: 'addr muted', text: ` ${str(self.address)}` }) : null,
      ' · ',
      h('span', { class: up ? 'store' : 'store bad', dataset: { role: 'store' }, text: store }),
      ' · ',
      h('span', { class: self.registered ? null : 'bad', dataset: { role: 'lease' }, text: lease }),
      revision ? h('span', { class: 'muted', text: ` · revision ${revision}` }) : null,
    );
  }

  /**
   * Values in the store this node refused, and flows the plan gives it that it could not start.
   * @param {{ key: string, reason: string }[]} refused
   * @param {{ name: string, message: string }[]} failed
   */
  #problems(refused, failed) {
    const items = [
      ...refused.map((r) => h('li', null, h('code', { text: str(r?.key) }), `: ${str(r?.reason)}`)),
      ...failed.map((f) => h('li', null, 'local flow ', h('code', { text: str(f?.name) }), `: ${str(f?.message)}`)),
    ];
    return items.length ? [h('div', { class: 'error', role: 'alert', dataset: { role: 'cluster-problems' } }, h('ul', null, ...items))] : [];
  }

  /**
   * @param {NodeView[]} nodes
   * @param {string} me
   */
  #nodeTable(nodes, me) {
    const head = ['node', 'address', 'tier', 'lease', 'load', 'capacity', 'used', '', 'version', 'started'];
    const rows = nodes.map((n) => {
      const load = num(n.load) ?? 0;
      const capacity = num(n.capacity);
      const ratio = capacity ? load / capacity : null;
      const started = n.startedAt ? Date.parse(n.startedAt) : NaN;
      const meter = h('meter', { min: 0, max: capacity ?? 1, value: Math.min(load, capacity ?? load), high: (capacity ?? 1) * 0.8, optimum: 0 });
      return h(
        'tr',
        { class: [n.name === me ? 'self' : '', ratio !== null && ratio > 1 ? 'over' : ''].join(' ').trim() || null, dataset: { node: n.name } },
        h('td', { class: 'addr', text: n.name === me ? `${n.name} (this node)` : n.name }),
        h('td', { class: 'addr', text: str(n.address) || '–' }),
        h('td', { text: str(n.tier) || '–' }),
        h('td', { dataset: { role: 'lease' }, text: n.lease ? `live (${n.lease})` : 'no lease' }),
        h('td', { class: 'num', dataset: { role: 'load' }, text: count(load) }),
        h('td', { class: 'num', dataset: { role: 'capacity' }, text: count(capacity) }),
        h('td', { class: 'num', text: percent(ratio) }),
        h('td', null, meter),
        h('td', { text: str(n.version) || '–' }),
        h('td', { title: str(n.startedAt), text: Number.isFinite(started) ? new Date(started).toLocaleString('en-GB', { hour12: false }) : '–' }),
      );
    });
    return h(
      'table',
      { class: 'cluster-nodes' },
      h('thead', null, h('tr', null, ...head.map((t, i) => h('th', { class: i >= 4 && i <= 6 ? 'num' : null, text: t })))),
      h('tbody', null, ...rows),
      nodes.length === 0 ? h('caption', { class: 'muted', text: 'No live node.' }) : null,
    );
  }

  /**
   * @param {FlowView} f
   * @param {string} me
   */
  #flow(f, me) {
    const ingest = f.ingest ?? {};
    const active = f.activeIngest ?? null;
    /** @param {string} role @param {string | undefined} name */
    const ingestNode = (role, name) =>
      name
        ? h(
            'span',
            { class: name === active ? 'ingest active' : 'ingest', dataset: { role: `ingest-${role}`, node: name, active: String(name === active) } },
            `${role} `,
            h('span', { class: 'addr', text: name }),
            name === active ? ' (active)' : '',
          )
        : null;
    const subs = list(f.subscribers).filter((s) => s && typeof s.to === 'string');
    const mine = subs.filter((s) => s.node === me).length;
    const unplaced = subs.filter((s) => s.node === null || s.node === undefined).length;
    const details = /** @type {HTMLDetailsElement} */ (
      h(
        'details',
        { class: 'subscribers', open: this.#open.get(f.name) ?? subs.length <= AUTO_COLLAPSE },
        h(
          'summary',
          null,
          `Subscribers ${count(subs.length)}`,
          h('span', { class: 'muted', text: ` · ${count(mine)} served by this node` }),
          unplaced ? h('span', { class: 'alerts', text: ` · ${count(unplaced)} served by no node` }) : null,
        ),
        h(
          'table',
          { class: 'subs' },
          h('thead', null, h('tr', null, h('th', { text: 'subscriber' }), h('th', { text: 'served by' }))),
          h(
            'tbody',
            null,
            ...subs.map((s) => {
              const node = s.node ?? null;
              return h(
                'tr',
                { class: node === me ? 'mine' : node === null ? 'unplaced' : null, dataset: { to: s.to, node: node ?? '' } },
                h('td', { class: 'addr', text: s.to }),
                h('td', { class: 'addr', dataset: { role: 'served-by' }, text: node === null ? 'none' : node === me ? `${node} (this node)` : node }),
              );
            }),
          ),
        ),
      )
    );
    const initial = details.open;
    // A details element built open fires a toggle of its own: only a change from the drawn state is the user's.
    details.addEventListener('toggle', () => {
      if (details.open !== initial || this.#open.has(f.name)) this.#open.set(f.name, details.open);
    });
    const edges = list(f.edges).map(str);
    return h(
      'article',
      { class: 'cluster-flow', dataset: { clusterFlow: f.name } },
      h(
        'header',
        null,
        h('h3', { text: f.name }),
        h('span', { class: 'addr listen', text: `port ${str(ingest.port)}${f.relayPort !== ingest.port ? `, relay ${str(f.relayPort)}` : ''}` }),
      ),
      h(
        'div',
        { class: 'cluster-ingest' },
        'ingest: ',
        ingestNode('primary', ingest.primary),
        ingest.backup ? ', ' : '',
        ingestNode('backup', ingest.backup),
        active === null ? h('span', { class: 'alerts', dataset: { role: 'no-ingest' }, text: ' — no live ingest node' }) : null,
      ),
      h('div', { class: 'muted', text: `edges: ${edges.join(', ') || '–'}` }),
      details,
    );
  }
}
