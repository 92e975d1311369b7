/**
 * The dashboard's entry: asks for the API token once (kept in localStorage),
 * keeps the event stream open, loads a snapshot of flows, gateways, health,
 * the cluster and the fan-out at every (re)connection, and routes each event
 * to the part of the page it changes. The tcp-redirects' counters and the
 * fan-out are not in the stats events: they are read again on the stats
 * events' rhythm, every few seconds.
 */
import { createApi, ApiError } from './api.js';
import { EventConnection } from './events.js';
import { FlowList } from './flows.js';
import { GatewayList } from './gateways.js';
import { ClusterPanel } from './cluster.js';
import { TcpRelayList, isTcpView } from './tcp-relays.js';
import { FanoutPanel } from './fanout.js';
import { Poll } from './poll.js';
import { EventLog } from './event-log.js';
import { eventTimeMs } from './rates.js';
import { setText } from './dom.js';
import { duration } from './format.js';

const TOKEN_KEY = 'sluice.apiToken';
const HEALTH_EVERY_MS = 10_000;
/** The cluster view is read again on the stats events' rhythm, at most this often (and at once when a cluster flow of this node changes). */
const CLUSTER_EVERY_MS = 3_000;
/** GET /v1/flows for the tcp-redirects' counters (while there is one), and GET /v1/fanout, at most this often. */
const TCP_EVERY_MS = 2_000;
const FANOUT_EVERY_MS = 2_000;
/** A daemon without a fan-out is asked again this rarely (a reload may add one). */
const FANOUT_ABSENT_EVERY_MS = 30_000;

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {string | null} */
let token = readToken();
const api = createApi(() => token);
const flows = new FlowList(byId('flows'), byId('flow-count'), byId('no-flows'), api);
const gateways = new GatewayList(byId('gateways-section'), byId('gateways'));
const cluster = new ClusterPanel(byId('cluster-section'), byId('cluster'), byId('cluster-summary'));
const tcpRelays = new TcpRelayList(byId('tcp-section'), byId('tcp-relays'), byId('tcp-count'));
const fanout = new FanoutPanel(byId('fanout-section'), byId('fanout'), byId('fanout-summary'));
const log = new EventLog(byId('event-log'));
const connection = new EventConnection(api.openEvents, onEvent, onState);
const dialog = /** @type {HTMLDialogElement} */ (byId('token-dialog'));
const tokenInput = /** @type {HTMLInputElement} */ (byId('token-input'));
let lastStatsMs = 0;
/** @type {ReturnType<typeof setInterval> | undefined} */
let healthTimer;
/** Whether the daemon is a cluster node: unknown until GET /v1/cluster answered, asked again at each (re)connection. @type {boolean | null} */
let isCluster = null;
let clusterAt = 0;
let clusterBusy = false;
/** A change arrived while a request was out (its answer may predate the change): ask again once it is back. */
let clusterAgain = false;
/** Whether the daemon runs a fan-out: unknown until GET /v1/fanout answered (404: none). @type {boolean | null} */
let hasFanout = null;
const tcpPoll = new Poll(async () => {
  const list = await api.flows();
  tcpRelays.sync(tcpViews(list), Date.now());
});
const fanoutPoll = new Poll(async () => {
  try {
    fanout.update(await api.fanout(), Date.now());
    hasFanout = true;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    hasFanout = false;
    fanout.hide();
  }
});

byId('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = tokenInput.value.trim();
  if (!value) return;
  token = value;
  try {
    localStorage.setItem(TOKEN_KEY, value);
  } catch {
    // Storage refused (private mode, quota): the token lasts for this page only.
  }
  tokenInput.value = '';
  dialog.close();
  connection.start();
});
byId('change-token').addEventListener('click', () => askToken(''));
byId('filter').addEventListener('input', (event) => flows.setFilter(/** @type {HTMLInputElement} */ (event.target).value));

if (token) connection.start();
else askToken('');

function readToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** @param {string} reason shown above the field ('' for none) */
function askToken(reason) {
  const hint = byId('token-reason');
  setText(hint, reason);
  hint.hidden = !reason;
  if (!dialog.open) dialog.showModal();
  tokenInput.focus();
}

/**
 * @param {import('./events.js').ConnectionState} state
 * @param {string} [detail]
 */
function onState(state, detail) {
  const conn = byId('conn');
  conn.dataset.state = state;
  const text = { connecting: 'connecting…', open: 'live', waiting: 'reconnecting', unauthorized: 'token refused', stopped: 'stopped' }[state];
  setText(conn, detail ? `${text}: ${detail}` : text);
  clearInterval(healthTimer);
  if (state === 'open') {
    void resync();
    healthTimer = setInterval(() => void refreshHealth(), HEALTH_EVERY_MS);
  } else if (state === 'unauthorized') {
    connection.stop();
    askToken('The daemon refused this token. Enter the one in the token file `sluice serve` printed at start-up.');
  }
}

/** A snapshot after each (re)connection: what happened while the stream was down is not replayed. */
async function resync() {
  try {
    const [flowList, tpo] = await Promise.all([api.flows(), api.gateways().catch(() => ({ gateways: [] }))]);
    // tcp-redirects (no UDP counters, not in the stats events) have their own cards.
    flows.sync(Array.isArray(flowList?.flows) ? flowList.flows.filter((/** @type {unknown} */ f) => !isTcpView(f)) : []);
    tcpRelays.sync(tcpViews(flowList), Date.now());
    gateways.update(Array.isArray(tpo?.gateways) ? tpo.gateways : [], null);
    showBanner(null);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return onState('unauthorized');
    showBanner(`Could not load the flows: ${err instanceof Error ? err.message : String(err)}`);
  }
  isCluster = null;
  hasFanout = null;
  await Promise.all([refreshHealth(), refreshCluster(), fanoutPoll.run()]);
}

/** The tcp-redirects of a GET /v1/flows answer. @param {any} flowList */
function tcpViews(flowList) {
  return Array.isArray(flowList?.flows) ? flowList.flows.filter(isTcpView) : [];
}

async function refreshHealth() {
  try {
    const h = await api.health();
    const failures = Array.isArray(h.failures) ? h.failures : [];
    const parts = [h.status === 'ok' ? 'ok' : String(h.status), `tier ${h.tier}`, `v${h.version}`, `up ${duration(Number(h.uptimeS) || 0)}`];
    if (failures.length > 0) parts.push(failures.map((/** @type {any} */ f) => `${f.engine}: ${f.message}`).join('; '));
    const health = byId('health');
    setText(health, parts.join(' · '));
    health.dataset.status = String(h.status);
    // Flows the page does not know of (a tcp-redirect a reload started: no event says so), or knows of and are gone.
    if (typeof h.flows === 'number' && h.flows !== flows.size + tcpRelays.size) void tcpPoll.run();
  } catch {
    // The stream's state already says when the daemon is unreachable.
  }
}

/** GET /v1/cluster: the panel, or none on a daemon that is not a cluster node (404). */
async function refreshCluster() {
  if (isCluster === false) return;
  if (clusterBusy) {
    clusterAgain = true;
    return;
  }
  clusterBusy = true;
  clusterAt = Date.now();
  try {
    cluster.update(await api.cluster());
    isCluster = true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      isCluster = false;
      cluster.hide();
    }
    // Anything else (the daemon away, a refused token): the stream's state says so; the last view stays.
  } finally {
    clusterBusy = false;
  }
  if (clusterAgain) {
    clusterAgain = false;
    await refreshCluster();
  }
}

/** @param {string | null} text */
function showBanner(text) {
  const banner = byId('banner');
  setText(banner, text ?? '');
  banner.hidden = !text;
}

/**
 * @param {string} type
 * @param {any} data
 */
function onEvent(type, data) {
  if (!data || typeof data !== 'object') return;
  switch (type) {
    case 'stats': {
      const tMs = eventTimeMs(data.t);
      const dtS = lastStatsMs > 0 ? (tMs - lastStatsMs) / 1000 : null;
      lastStatsMs = tMs;
      flows.applyStats(data);
      if (Array.isArray(data.gateways)) gateways.update(data.gateways, dtS);
      if (isCluster && Date.now() - clusterAt >= CLUSTER_EVERY_MS) void refreshCluster();
      if (tcpRelays.size > 0 && tcpPoll.due(TCP_EVERY_MS)) void tcpPoll.run();
      if (fanoutPoll.due(hasFanout === false ? FANOUT_ABSENT_EVERY_MS : FANOUT_EVERY_MS)) void fanoutPoll.run();
      return;
    }
    case 'flowadded':
    case 'flowchanged':
      if (isTcpView(data.flow)) {
        tcpRelays.upsert(data.flow, Date.now());
        // A read of the list out now may predate the change: it is read again once back.
        void tcpPoll.run();
      } else flows.upsert(data.flow);
      if (isClusterFlow(data.flow?.name)) void refreshCluster();
      break;
    case 'flowremoved':
      flows.remove(String(data.name));
      if (tcpRelays.remove(String(data.name))) void tcpPoll.run();
      if (isClusterFlow(data.name)) void refreshCluster();
      break;
    case 'peerup':
    case 'peerdown':
      gateways.setPeerUp(String(data.gateway), String(data.peer), type === 'peerup');
      break;
    case 'tpochanged':
      // A peer added at run time: its role and address are in the full status, not in the stats events.
      void api
        .gateways()
        .then((tpo) => gateways.update(Array.isArray(tpo?.gateways) ? tpo.gateways : [], null))
        .catch(() => {});
      break;
    case 'enginefailed':
      void refreshHealth();
      break;
    default:
      break;
  }
  log.add(type, data);
}

/** The node's share of a cluster flow (`cluster.NAME.ingest`, `cluster.NAME.edge`): the plan changed. @param {unknown} name */
function isClusterFlow(name) {
  return typeof name === 'string' && name.startsWith('cluster.');
}
