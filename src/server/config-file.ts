/**
 * Reading the daemon's config file: bounded, regular files only
 * (src/fs/regular-file.ts), validated by the pure serve schema
 * (src/policy/serve-config.ts), then made concrete for this host: every
 * path resolved against the config file's folder, and the defaults that
 * depend on where and as whom the daemon runs filled in.
 */
import { homedir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { networkInterfaces } from 'node:os';
import { MAX_CONFIG_BYTES } from '../policy/config.js';
import { hostAddressesFrom } from '../policy/flow-set.js';
import { parseServeConfigText, type ServeConfig } from '../policy/serve-config.js';
import { FileRefusedError, readRegularFile } from '../fs/regular-file.js';
import { PolicyValidationError } from '../errors.js';
import { fanoutSpec } from '../index.js';

/** A serve config with absolute paths and every default filled. */
export interface ResolvedServeConfig extends ServeConfig {
  /** The config file itself, absolute. */
  readonly path: string;
  readonly api: ServeConfig['api'] & { readonly tokenFile: string };
  readonly state: string;
}

/** The token file's name in the default directory. */
export const TOKEN_FILE_NAME = 'api.token';

/**
 * Where the API token lives when neither the config nor --token-file says:
 * systemd's $STATE_DIRECTORY (StateDirectory=), else /var/lib/sluice for
 * root, else $XDG_STATE_HOME/sluice or ~/.local/state/sluice. `sluice
 * flows` and the other client commands look in the same place.
 */
export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env, uid: number | undefined = process.getuid?.()): string {
  const systemd = env.STATE_DIRECTORY?.split(':')[0];
  if (systemd) return join(systemd, TOKEN_FILE_NAME);
  if (uid === 0) return join('/var/lib/sluice', TOKEN_FILE_NAME);
  const xdg = env.XDG_STATE_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.local', 'state'), 'sluice', TOKEN_FILE_NAME);
}

/** `/etc/sluice/serve.yaml` → `/etc/sluice/serve.state.json`. */
export function defaultStateFile(configPath: string): string {
  const abs = resolve(configPath);
  return join(dirname(abs), `${basename(abs, extname(abs))}.state.json`);
}

/** Validates config text and resolves it as if read from `configPath`. */
export function resolveServeConfig(text: string, configPath: string): ResolvedServeConfig {
  const path = resolve(configPath);
  const config = parseServeConfigText(text, configPath, hostAddressesFrom(networkInterfaces()));
  if (config.fanout) {
    // Addresses, inputs and allow rules: checked as Fanout.start checks them, named under `fanout.`.
    try {
      fanoutSpec(config.fanout);
    } catch (err) {
      if (!(err instanceof PolicyValidationError)) throw err;
      throw new PolicyValidationError(
        err.issues.map((i) => ({ path: `fanout.${i.path}`, message: i.message })),
        'invalid serve config',
      );
    }
  }
  const dir = dirname(path);
  const at = (p: string) => resolve(dir, p);
  return {
    ...config,
    path,
    api: {
      ...config.api,
      tokenFile: config.api.tokenFile !== undefined ? at(config.api.tokenFile) : defaultTokenFile(),
      ...(config.api.tls ? { tls: { cert: at(config.api.tls.cert), key: at(config.api.tls.key) } } : {}),
    },
    state: config.state !== undefined ? at(config.state) : defaultStateFile(path),
    tpo: config.tpo.map((t) => ({ config: at(t.config) })),
    ...(config.cluster?.tpoMesh ? { cluster: { ...config.cluster, tpoMesh: { ...config.cluster.tpoMesh, keyFile: at(config.cluster.tpoMesh.keyFile) } } } : {}),
  };
}

/**
 * Reads and validates the config file. Throws PolicyValidationError: a
 * file that cannot be read (not a regular file, too large, missing), bad
 * YAML (with its line) or a bad field (with its path).
 */
export function loadServeConfig(configPath: string): ResolvedServeConfig {
  let data: Buffer;
  try {
    data = readRegularFile(configPath, { maxBytes: MAX_CONFIG_BYTES }).data;
  } catch (err) {
    if (err instanceof FileRefusedError) throw new PolicyValidationError([{ path: '', message: err.message }], 'invalid serve config');
    throw err;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new PolicyValidationError([{ path: '', message: `${configPath}: not UTF-8 text` }], 'invalid serve config');
  }
  return resolveServeConfig(text, configPath);
}
