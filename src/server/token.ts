/**
 * The API's bearer token: one secret in a file only its owner may read.
 * `sluice serve` creates it on first start (32 random bytes, base64url,
 * mode 0600, in a directory it creates with mode 0700) and the client
 * commands read it from the same default path. A token file that group or
 * others may read or write is refused: whoever can read it controls every
 * flow, and whoever can write it can choose the token.
 */
import { closeSync, constants, mkdirSync, openSync, writeSync } from 'node:fs';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { dirname } from 'node:path';
import { FileRefusedError, readRegularFile } from '../fs/regular-file.js';
import { SluiceError } from '../errors.js';

/** Random bytes in a created token. */
export const TOKEN_BYTES = 32;
/** Shortest token accepted from a file written by hand. */
export const MIN_TOKEN_CHARS = 16;
const MAX_TOKEN_FILE_BYTES = 4096;

/** The token file cannot be used: `reason` says why and what to do. */
export class TokenFileError extends SluiceError<'SLUICE_ERR_FILE_REFUSED'> {
  override name = 'TokenFileError';
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super('SLUICE_ERR_FILE_REFUSED', `API token file ${path}: ${reason}`);
  }
}

export interface ApiToken {
  /** The file it came from. */
  readonly path: string;
  /** True when this call created the file. */
  readonly created: boolean;
  /** The token itself (for clients that send it). */
  readonly value: string;
  /** Compares a presented token in constant time (the comparison takes as long whatever the input). */
  matches(candidate: string): boolean;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function makeToken(path: string, value: string, created: boolean): ApiToken {
  const want = digest(value);
  // Both sides hashed to 32 bytes first: timingSafeEqual needs equal lengths, and the length of the token leaks nothing.
  return { path, created, value, matches: (candidate) => timingSafeEqual(digest(candidate), want) };
}

/**
 * Reads the token file: a regular file, owner-only (no group or other
 * permission bits), holding one token of 16 to 1024 printable ASCII
 * characters (surrounding whitespace ignored). Throws TokenFileError.
 */
export function readToken(path: string): ApiToken {
  let data: Buffer;
  let mode: number;
  try {
    const f = readRegularFile(path, { maxBytes: MAX_TOKEN_FILE_BYTES });
    data = f.data;
    mode = f.stat.mode & 0o777;
  } catch (err) {
    if (err instanceof FileRefusedError) throw new TokenFileError(path, err.reason);
    throw err;
  }
  if (mode & 0o077) {
    throw new TokenFileError(path, `mode ${mode.toString(8).padStart(4, '0')} lets group or others use it; only its owner may (chmod 600 ${path})`);
  }
  const value = data.toString('latin1').trim();
  if (!new RegExp(`^[\\x21-\\x7e]{${MIN_TOKEN_CHARS},1024}$`).test(value)) {
    throw new TokenFileError(path, `expected one token of ${MIN_TOKEN_CHARS} to 1024 printable characters (delete the file to have a new one made)`);
  }
  return makeToken(path, value, false);
}

/**
 * The token at `path`, created if the file does not exist: the missing
 * directories with mode 0700, the file exclusively (O_EXCL: a file that
 * appears meanwhile is read, not overwritten) with mode 0600.
 */
export function loadOrCreateToken(path: string): ApiToken {
  try {
    return readToken(path);
  } catch (err) {
    if (!(err instanceof TokenFileError && err.reason === 'ENOENT')) throw err;
  }
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new TokenFileError(path, `cannot create its directory: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const value = randomBytes(TOKEN_BYTES).toString('base64url');
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return readToken(path);
    throw new TokenFileError(path, `cannot create it: ${code ?? String(err)}`);
  }
  try {
    writeSync(fd, `${value}\n`);
  } finally {
    closeSync(fd);
  }
  return makeToken(path, value, true);
}
