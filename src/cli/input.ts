/**
 * Files the CLI reads because the user named them (config files, an
 * aggregate's JSON, a file to send): regular files only, bounded in size,
 * refusals as usage errors (exit 2) that name the file.
 */
import { FileRefusedError, readRegularFile } from '../fs/regular-file.js';
import { PolicyValidationError } from '../errors.js';

/** Reads `path` (at most `maxBytes`) or throws a PolicyValidationError prefixed `what`. */
export function readInputFile(path: string, maxBytes: number, what: string): Buffer {
  try {
    return readRegularFile(path, { maxBytes }).data;
  } catch (err) {
    if (err instanceof FileRefusedError) throw new PolicyValidationError([{ path: '', message: err.message }], what);
    throw err;
  }
}

/**
 * UTF-8 text of a file. A byte-order mark is dropped; invalid UTF-8 is
 * refused rather than silently replaced.
 */
export function readInputText(path: string, maxBytes: number, what: string): string {
  const data = readInputFile(path, maxBytes, what);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new PolicyValidationError([{ path: '', message: `${path}: not UTF-8 text` }], what);
  }
  return text;
}
