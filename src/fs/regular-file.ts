/**
 * Reading a file that a user (or a file a user was handed) names: config
 * files, key files, aggregate payloads, `sluice write --file`. Only
 * regular files, size checked before reading, never more read than the
 * limit. A FIFO would block the reader forever, a device such as
 * /dev/zero would grow memory until the OOM killer, a directory gives a
 * confusing EISDIR; all are refused with a reason instead.
 */
import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { relative, isAbsolute, sep } from 'node:path';
import { SluiceError } from '../errors.js';

/**
 * The file cannot be used; `reason` says why, to follow "cannot read
 * PATH: " (an errno such as ENOENT, or words). Code SLUICE_ERR_FILE_REFUSED.
 */
export class FileRefusedError extends SluiceError<'SLUICE_ERR_FILE_REFUSED'> {
  override name = 'FileRefusedError';
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super('SLUICE_ERR_FILE_REFUSED', `cannot read ${path}: ${reason}`);
  }
}

export interface ReadRegularFileOptions {
  /** Refuse files larger than this many bytes (checked before reading, and while reading). */
  readonly maxBytes: number;
  /**
   * Only a file whose real path (symbolic links resolved, as opened) lies
   * inside this directory. Checked on the opened descriptor, so a link
   * swapped in between the check and the read cannot escape.
   */
  readonly within?: string;
}

export interface RegularFile {
  readonly data: Buffer;
  /** The file's status as opened (mode, owner, size). */
  readonly stat: Stats;
}

/** What a non-regular file is, for messages. */
export function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'a special file';
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

/** True when `path` is `dir` or below it (both absolute, real). */
export function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${sep}`));
}

/**
 * Reads a regular file of at most `maxBytes`. The path is checked with
 * stat before opening (opening some devices has effects of its own), and
 * the opened descriptor again with fstat (the path may have changed in
 * between). Opened with O_NONBLOCK and O_NOCTTY, so even a FIFO or
 * terminal swapped in at the last moment cannot block or take over the
 * process. Throws FileRefusedError.
 */
export function readRegularFile(path: string, opts: ReadRegularFileOptions): RegularFile {
  let before: Stats;
  try {
    before = statSync(path);
  } catch (err) {
    throw new FileRefusedError(path, errnoOf(err));
  }
  if (!before.isFile()) throw new FileRefusedError(path, `${fileKind(before)}, not a regular file`);
  if (before.size > opts.maxBytes) throw new FileRefusedError(path, `${before.size} bytes, more than the limit of ${opts.maxBytes}`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw new FileRefusedError(path, errnoOf(err));
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileRefusedError(path, `${fileKind(st)}, not a regular file`);
    if (st.dev !== before.dev || st.ino !== before.ino) throw new FileRefusedError(path, 'replaced while being opened');
    if (opts.within !== undefined) {
      const real = openedPath(fd, path);
      let dir: string;
      try {
        dir = realpathSync(opts.within);
      } catch (err) {
        throw new FileRefusedError(path, `cannot resolve ${opts.within}: ${errnoOf(err)}`);
      }
      if (!isInside(dir, real)) throw new FileRefusedError(path, `resolves to ${real}, outside ${dir}`);
    }
    if (st.size > opts.maxBytes) throw new FileRefusedError(path, `${st.size} bytes, more than the limit of ${opts.maxBytes}`);
    // Read until EOF, never more than one byte past the limit: a file that
    // grew since fstat is caught without being read whole.
    const chunks: Buffer[] = [];
    let n = 0;
    let want = Math.min(opts.maxBytes, st.size) + 1;
    for (;;) {
      const chunk = Buffer.allocUnsafe(want);
      let got: number;
      try {
        got = readSync(fd, chunk, 0, chunk.length, null);
      } catch (err) {
        throw new FileRefusedError(path, errnoOf(err));
      }
      if (got === 0) break;
      chunks.push(chunk.subarray(0, got));
      n += got;
      if (n > opts.maxBytes) throw new FileRefusedError(path, `grew past the limit of ${opts.maxBytes} bytes while being read`);
      want = Math.min(64 * 1024, opts.maxBytes + 1 - n);
    }
    return { data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n), stat: st };
  } finally {
    closeSync(fd);
  }
}

/** The real path of an open descriptor (Linux: /proc/self/fd), else of the path. */
function openedPath(fd: number, path: string): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    try {
      return realpathSync(path);
    } catch (err) {
      throw new FileRefusedError(path, `cannot resolve its path: ${errnoOf(err)}`);
    }
  }
}
