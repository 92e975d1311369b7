/**
 * The daemon's server-sent event stream, read with fetch and a stream reader:
 * EventSource cannot send an Authorization header, and the token must never
 * be put in a URL (it would end up in logs and the browser's history).
 *
 * EventConnection keeps one stream open: it reconnects with a growing,
 * jittered delay (0.5 s doubling to 15 s, back to the start once a stream has
 * delivered an event), treats 35 s without a byte as a dead connection (the
 * daemon sends stats every second and a keepalive every 15 s), and stops on a
 * 401 until it is given a new token.
 */

/**
 * Splits text/event-stream bytes into events (the WHATWG format: `event:`,
 * `data:` lines joined by "\n", `id:`, `:` comments, a blank line ends one).
 */
export class EventStreamParser {
  #buffer = '';
  #afterCr = false;
  #type = '';
  /** @type {string[]} */
  #data = [];
  /** @type {string | undefined} */
  lastId;

  /**
   * @param {string} chunk decoded text, any split
   * @param {(type: string, data: string, id: string | undefined) => void} onEvent
   */
  push(chunk, onEvent) {
    if (chunk === '') return;
    let text = chunk;
    // A CR ended the previous chunk's last line: an LF opening this one is the rest of that CRLF.
    if (this.#afterCr && text.startsWith('\n')) text = text.slice(1);
    this.#afterCr = false;
    this.#buffer += text;
    let start = 0;
    for (;;) {
      const lf = this.#buffer.indexOf('\n', start);
      const cr = this.#buffer.indexOf('\r', start);
      let end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      if (end === -1) break;
      const line = this.#buffer.slice(start, end);
      if (end === cr) {
        if (cr === this.#buffer.length - 1) this.#afterCr = true;
        else if (this.#buffer[cr + 1] === '\n') end += 1;
      }
      start = end + 1;
      this.#line(line, onEvent);
    }
    this.#buffer = this.#buffer.slice(start);
  }

  /**
   * @param {string} line
   * @param {(type: string, data: string, id: string | undefined) => void} onEvent
   */
  #line(line, onEvent) {
    if (line === '') {
      if (this.#data.length > 0) onEvent(this.#type || 'message', this.#data.join('\n'), this.lastId);
      this.#type = '';
      this.#data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#type = value;
    else if (field === 'data') this.#data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
  }
}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const SILENCE_MS = 35_000;

/**
 * @typedef {'connecting' | 'open' | 'waiting' | 'unauthorized' | 'stopped'} ConnectionState
 */

export class EventConnection {
  #open;
  #onEvent;
  #onState;
  /** @type {AbortController | null} */
  #abort = null;
  #delay = FIRST_DELAY_MS;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  #generation = 0;

  /**
   * @param {(signal: AbortSignal) => Promise<Response>} open
   * @param {(type: string, data: any) => void} onEvent
   * @param {(state: ConnectionState, detail?: string) => void} onState
   */
  constructor(open, onEvent, onState) {
    this.#open = open;
    this.#onEvent = onEvent;
    this.#onState = onState;
  }

  /** (Re)connects now, e.g. after a new token was entered. */
  start() {
    this.stop();
    this.#delay = FIRST_DELAY_MS;
    void this.#run(++this.#generation);
  }

  stop() {
    this.#generation += 1;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#abort?.abort();
    this.#abort = null;
  }

  /** @param {number} generation */
  async #run(generation) {
    const abort = new AbortController();
    this.#abort = abort;
    this.#onState('connecting');
    let silence = setTimeout(() => abort.abort(), SILENCE_MS);
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(() => abort.abort(), SILENCE_MS);
    };
    let detail = 'connection lost';
    try {
      const response = await this.#open(abort.signal);
      if (response.status === 401) {
        if (generation === this.#generation) this.#onState('unauthorized', 'the daemon refused the token');
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      this.#onState('open');
      const parser = new EventStreamParser();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        heard();
        parser.push(value, (type, data) => {
          this.#delay = FIRST_DELAY_MS;
          let parsed;
          try {
            parsed = JSON.parse(data);
          } catch {
            return;
          }
          try {
            this.#onEvent(type, parsed);
          } catch (err) {
            // A rendering bug must not drop the stream: report it and carry on.
            console.error('dashboard: handling a', type, 'event failed', err);
          }
        });
      }
      detail = 'the daemon closed the stream';
    } catch (err) {
      detail = abort.signal.aborted ? 'no data for 35 s' : err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(silence);
    }
    if (generation !== this.#generation) return;
    const wait = this.#delay * (0.75 + Math.random() * 0.5);
    this.#delay = Math.min(this.#delay * 2, MAX_DELAY_MS);
    this.#onState('waiting', `${detail}; retrying in ${Math.ceil(wait / 1000)} s`);
    this.#retryTimer = setTimeout(() => void this.#run(generation), wait);
  }
}
