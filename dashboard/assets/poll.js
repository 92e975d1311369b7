/**
 * A view the page reads again with a request now and then (the tcp-redirects'
 * counters, the fan-out): one request out at a time; a call while one is out
 * asks again once it is back (its answer may predate the change); `due()`
 * says whether the last one started long enough ago.
 */
export class Poll {
  #read;
  #busy = false;
  #again = false;
  #at = 0;

  /** @param {() => Promise<void>} read makes the request and shows its answer; it handles its own errors */
  constructor(read) {
    this.#read = read;
  }

  /** @param {number} everyMs */
  due(everyMs) {
    return Date.now() - this.#at >= everyMs;
  }

  async run() {
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    this.#at = Date.now();
    try {
      await this.#read();
    } catch {
      // The reader handles what it can; anything else (the daemon away) the stream's state already says.
    } finally {
      this.#busy = false;
    }
    if (this.#again) {
      this.#again = false;
      await this.run();
    }
  }
}
