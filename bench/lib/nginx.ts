/**
 * nginx as a bench peer: the stream module (a UDP relay in the relay suite,
 * a TCP proxy in the tcp suite) with one worker process, run in the
 * foreground from a temporary prefix. One place for what is installed, how
 * its version is named and how its config starts.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { commandExists, debVersion, versionOf } from './install.js';

const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export const nginxRequirement = {
  what: 'nginx',
  present: (): boolean => commandExists('nginx') && existsSync(NGINX_STREAM_MODULE),
  packages: ['nginx', 'libnginx-mod-stream'],
};

export const nginxVersion = (): string =>
  `${versionOf('nginx', ['-v'], /nginx version/).replace(/^nginx version: /, '')} (libnginx-mod-stream ${debVersion('libnginx-mod-stream') ?? '?'})`;

/** nginx.conf for one `stream {}` block (its lines as given) under `dir`, one worker, logs and pid file in `dir`. */
export function nginxStreamConfig(dir: string, streamLines: readonly string[]): string {
  return [
    `load_module ${NGINX_STREAM_MODULE};`,
    'daemon off;',
    'master_process on;',
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 1024; }',
    'stream {',
    ...streamLines,
    '}',
    '',
  ].join('\n');
}
