/**
 * The daemon's HTTP API as the page uses it: every request carries the token
 * as `Authorization: Bearer` (never in a URL), and every error comes back as
 * an ApiError built from the API's `{"error":{code, message, issues}}` body.
 */

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: no response, e.g. the daemon is down)
   * @param {string} code the API's stable code, e.g. 'subscriber_exists'
   * @param {string} message
   * @param {{ path: string, message: string }[]} issues field paths of a refused request
   */
  constructor(status, code, message, issues = []) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.issues = issues;
  }
}

/**
 * @param {() => string | null} getToken
 */
export function createApi(getToken) {
  /** @param {HeadersInit} [extra] */
  function headers(extra) {
    const h = new Headers(extra);
    const token = getToken();
    if (token) h.set('authorization', `Bearer ${token}`);
    return h;
  }

  /**
   * @param {string} method
   * @param {string} path under the origin, e.g. '/v1/flows'
   * @param {unknown} [body] sent as JSON
   * @returns {Promise<any>}
   */
  async function request(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, 'unreachable', `the daemon did not answer (${err instanceof Error ? err.message : String(err)})`);
    }
    const text = await response.text();
    /** @type {any} */
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!response.ok) throw toApiError(response.status, json, text);
    return json;
  }

  /**
   * The event stream's response (the caller reads its body).
   * @param {AbortSignal} signal
   */
  function openEvents(signal) {
    return fetch('/v1/events', { headers: headers({ accept: 'text/event-stream' }), cache: 'no-store', signal });
  }

  return {
    request,
    openEvents,
    flows: () => request('GET', '/v1/flows'),
    gateways: () => request('GET', '/v1/tpo'),
    health: () => request('GET', '/v1/health'),
    /** 404 on a daemon that is not a cluster node. */
    cluster: () => request('GET', '/v1/cluster'),
    /** 404 on a daemon whose config has no `fanout:` section. */
    fanout: () => request('GET', '/v1/fanout'),
    /** @param {string} flow @param {string} to */
    addSubscriber: (flow, to) => request('POST', `/v1/flows/${encodeURIComponent(flow)}/subscribers`, { to }),
    /** @param {string} flow @param {string} to */
    removeSubscriber: (flow, to) => request('DELETE', `/v1/flows/${encodeURIComponent(flow)}/subscribers?to=${encodeURIComponent(to)}`),
  };
}

/**
 * @param {number} status
 * @param {any} json
 * @param {string} text
 */
export function toApiError(status, json, text) {
  const err = json && typeof json === 'object' ? json.error : undefined;
  if (err && typeof err === 'object') {
    const issues = Array.isArray(err.issues)
      ? err.issues.map((/** @type {any} */ i) => ({
          path: Array.isArray(i?.path) ? i.path.join('.') : String(i?.path ?? ''),
          message: String(i?.message ?? ''),
        }))
      : [];
    return new ApiError(status, String(err.code ?? 'error'), String(err.message ?? `HTTP ${status}`), issues);
  }
  return new ApiError(status, 'http_error', `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`);
}
