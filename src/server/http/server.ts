/**
 * Starts the API on its listen address: the app (app.ts), TLS from the
 * certificate and key files when configured (read bounded, regular files
 * only), IPv4 or IPv6. Resolves with the URL it listens on.
 */
import type { FastifyInstance } from 'fastify';
import { readRegularFile } from '../../fs/regular-file.js';
import { formatListenAddress, type ListenAddress } from '../../policy/serve-config.js';
import { buildApp, type ApiAppOptions } from './app.js';
import type { EventHub } from './sse.js';

const MAX_PEM_BYTES = 1024 * 1024;

export interface ApiServer {
  readonly app: FastifyInstance;
  readonly hub: EventHub;
  /** `http://127.0.0.1:9180`, `https://[::1]:9180`: with the port actually bound. */
  readonly url: string;
  close(): Promise<void>;
}

export interface ApiServerOptions extends Omit<ApiAppOptions, 'https'> {
  readonly listen: ListenAddress;
  readonly tls?: { readonly cert: string; readonly key: string };
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const https = opts.tls
    ? { cert: readRegularFile(opts.tls.cert, { maxBytes: MAX_PEM_BYTES }).data, key: readRegularFile(opts.tls.key, { maxBytes: MAX_PEM_BYTES }).data }
    : undefined;
  const { app, hub } = await buildApp({ ...opts, ...(https ? { https } : {}) });
  try {
    await app.listen({ host: opts.listen.host, port: opts.listen.port, listenTextResolver: (address) => `API listening on ${address}` });
  } catch (err) {
    await app.close().catch(() => undefined);
    throw err;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.listen.port;
  const url = `${https ? 'https' : 'http'}://${formatListenAddress({ host: opts.listen.host, port })}`;
  return { app, hub, url, close: () => app.close() };
}
