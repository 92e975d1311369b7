/**
 * The package's version, read once from package.json (two folders up from
 * this module both in src/server/ and in dist/server/), for /v1/health
 * and the `ready` log line.
 */
import { readRegularFile } from '../fs/regular-file.js';

let cached: string | undefined;

export function packageVersion(): string {
  if (cached === undefined) {
    try {
      const { data } = readRegularFile(new URL('../../package.json', import.meta.url).pathname, { maxBytes: 64 * 1024 });
      const v = (JSON.parse(data.toString('utf8')) as { version?: unknown }).version;
      cached = typeof v === 'string' ? v : 'unknown';
    } catch {
      cached = 'unknown';
    }
  }
  return cached;
}
