/**
 * The dashboard's static files (issue 19): `GET /` (dashboard/index.html) and
 * `GET /assets/<file>` (dashboard/assets/ and uPlot's dist files from
 * node_modules). They carry no data, so they need no token; the page asks for
 * the token and sends it on its own /v1 requests.
 *
 * The files are read once, when the plugin registers, into a map keyed by
 * their public name: a request can only ever name one of those entries (one
 * path segment, looked up, never joined onto a folder), so there is no path
 * to traverse and no file-system call per request. Editing dashboard/ takes
 * a restart of the daemon.
 *
 * Every response says `Content-Security-Policy: default-src 'self'` (no inline
 * script or style, no other origin: the page's libraries come from npm through
 * this plugin, never from a CDN) and `X-Content-Type-Options: nosniff`.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';

/**
 * dashboard/ at the package root: three folders up from both src/server/http/
 * (run through tsx) and dist/server/http/ (after `npm run build`).
 */
export const DASHBOARD_DIR = fileURLToPath(new URL('../../../dashboard/', import.meta.url));

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Public asset names: one segment, no leading dot (so never `..`), a known extension. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.(js|css|svg|png)$/;

/** uPlot's files, served under these names beside the page's own. */
const VENDOR_FILES: readonly { readonly name: string; readonly specifier: string }[] = [
  { name: 'uPlot.esm.js', specifier: 'uplot/dist/uPlot.esm.js' },
  { name: 'uPlot.min.css', specifier: 'uplot/dist/uPlot.min.css' },
];

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

export interface DashboardOptions {
  /** Folder holding index.html and assets/ (default: the package's dashboard/). */
  readonly dir?: string;
}

/** Registers `GET /` and `GET /assets/:file` (HEAD too, as fastify adds it). */
export const dashboardPlugin: FastifyPluginAsync<DashboardOptions> = async (app, options) => {
  const dir = options.dir ?? DASHBOARD_DIR;
  const index = await load(join(dir, 'index.html'));
  const assets = await loadAssets(join(dir, 'assets'));

  app.get('/', async (request, reply) => send(reply, index, request.headers['if-none-match']));
  app.get<{ Params: { file: string } }>('/assets/:file', async (request, reply) => {
    const file = assets.get(request.params.file);
    if (!file) {
      // The app's own 404 (the API's JSON error body), as for any unknown path.
      reply.callNotFound();
      return reply;
    }
    return send(reply, file, request.headers['if-none-match']);
  });
};

/** The page's own assets (regular files with a known extension) and uPlot's, by public name. */
async function loadAssets(assetDir: string): Promise<Map<string, StaticFile>> {
  const assets = new Map<string, StaticFile>();
  for (const entry of await readdir(assetDir, { withFileTypes: true })) {
    if (entry.isFile() && ASSET_NAME.test(entry.name)) assets.set(entry.name, await load(join(assetDir, entry.name)));
  }
  const require = createRequire(import.meta.url);
  for (const { name, specifier } of VENDOR_FILES) assets.set(name, await load(require.resolve(specifier)));
  return assets;
}

async function load(path: string): Promise<StaticFile> {
  const body = await readFile(path);
  const type = CONTENT_TYPES[extname(path)] ?? 'application/octet-stream';
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, type, etag };
}

function send(reply: FastifyReply, file: StaticFile, ifNoneMatch: string | undefined): FastifyReply {
  reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    // Revalidated on every load (cheap: an ETag), so a restarted daemon's new page is seen at once.
    .header('cache-control', 'no-cache')
    .header('etag', file.etag);
  if (ifNoneMatch === file.etag) return reply.code(304).send();
  return reply.type(file.type).send(file.body);
}
