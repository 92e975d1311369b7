/**
 * A TPO config from a file (what `sluice tpo --config` and
 * `TpoGateway.start({ config: path })` read): a regular file of at most
 * MAX_TPO_CONFIG_BYTES of UTF-8 YAML or JSON, whose key files are named
 * relative to the config file's folder.
 */
import { dirname, resolve } from 'node:path';
import { FileRefusedError, readRegularFile } from '../../fs/regular-file.js';
import { MAX_TPO_CONFIG_BYTES, parseTpoConfigText, readKeyFile, TpoConfigError, type TpoConfig } from './config.js';

/** Parses the text of the config file at `path` (key files are read relative to its folder). */
export function parseTpoConfigFile(text: string, path: string): TpoConfig {
  return parseTpoConfigText(text, path, (keyFile) => readKeyFile(resolve(dirname(path), keyFile)));
}

/**
 * Reads and parses the config file at `path`. Every problem, the file's
 * own (not a regular file, too large, not UTF-8) included, is a
 * TpoConfigError naming the file, field by field.
 */
export function loadTpoConfig(path: string): TpoConfig {
  let data: Buffer;
  try {
    data = readRegularFile(path, { maxBytes: MAX_TPO_CONFIG_BYTES }).data;
  } catch (err) {
    if (err instanceof FileRefusedError) throw new TpoConfigError([err.message], path);
    throw err;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new TpoConfigError([`${path}: not UTF-8 text`], path);
  }
  return parseTpoConfigFile(text, path);
}
