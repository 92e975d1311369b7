/** The serve config (src/policy/serve-config.ts) and its file reader (src/server/config-file.ts). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { PolicyValidationError } from '../../src/index.js';
import { parseListenAddress, parseServeConfigText, formatListenAddress } from '../../src/policy/serve-config.js';
import { defaultStateFile, defaultTokenFile, loadServeConfig } from '../../src/server/config-file.js';

function rejects(fn: () => unknown, path: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PolicyValidationError, `expected PolicyValidationError, got ${String(e)}`);
    const hit = e.issues.find((i) => i.path === path);
    assert.ok(hit, `no issue at '${path}': ${JSON.stringify(e.issues)}`);
    assert.match(hit.message, message);
    return true;
  });
}

describe('serve config', () => {
  test('an empty mapping gets every default: loopback API, no flows, info logs', () => {
    const c = parseServeConfigText('{}');
    assert.equal(c.tier, 'auto');
    assert.deepEqual(c.flows, []);
    assert.deepEqual(c.api.listen, { host: '127.0.0.1', port: 9180 });
    assert.equal(c.api.maxBodyBytes, 1024 * 1024);
    assert.deepEqual(c.api.rateLimit, { perSecond: 50, burst: 100 });
    assert.equal(c.api.tokenFile, undefined);
    assert.equal(c.api.tls, undefined);
    assert.equal(c.state, undefined);
    assert.deepEqual(c.log, { level: 'info' });
    assert.deepEqual(c.tpo, []);
  });

  test("a full config: sluice run's fields plus api, state, log and tpo; flows as written", () => {
    const c = parseServeConfigText(`
tier: portable
flows:
  - name: tv
    type: replicate
    listen: udp://127.0.0.1:5000
    allow: 127.0.0.1
    to: [udp://127.0.0.1:6000]
api:
  listen: "[::1]:9999"
  tokenFile: ./t.token
  tls: { cert: a.crt, key: a.key }
  maxBodyBytes: 4096
  rateLimit: { perSecond: 5 }
state: ./s.json
log: { level: debug }
tpo:
  - config: tpo-a.yaml
`);
    assert.equal(c.tier, 'portable');
    assert.deepEqual(c.flows, [{ name: 'tv', type: 'replicate', listen: 'udp://127.0.0.1:5000', allow: '127.0.0.1', to: ['udp://127.0.0.1:6000'] }]);
    assert.deepEqual(c.api.listen, { host: '::1', port: 9999 });
    assert.equal(c.api.tokenFile, './t.token');
    assert.deepEqual(c.api.tls, { cert: 'a.crt', key: 'a.key' });
    assert.deepEqual(c.api.rateLimit, { perSecond: 5, burst: 100 });
    assert.equal(c.state, './s.json');
    assert.equal(c.log.level, 'debug');
    assert.deepEqual(c.tpo, [{ config: 'tpo-a.yaml' }]);
  });

  test('errors name the field', () => {
    rejects(() => parseServeConfigText('api: { listen: "example.com:80" }'), 'api.listen', /not an IP address/);
    rejects(() => parseServeConfigText('api: { listen: "::1:80" }'), 'api.listen', /brackets/);
    rejects(() => parseServeConfigText('api: { listen: "127.0.0.1:70000" }'), 'api.listen', /port/);
    rejects(() => parseServeConfigText('api: { rateLimit: { burst: 0 } }'), 'api.rateLimit.burst', /.+/);
    rejects(() => parseServeConfigText('api: { maxBodyBytes: 1.5 }'), 'api.maxBodyBytes', /integer/);
    rejects(() => parseServeConfigText('api: { tls: { cert: a } }'), 'api.tls.key', /required/);
    rejects(() => parseServeConfigText('api: { port: 1 }'), 'api', /unknown field 'port'/);
    rejects(() => parseServeConfigText('log: { level: loud }'), 'log.level', /.+/);
    rejects(() => parseServeConfigText('tpo: [ { file: x } ]'), 'tpo[0]', /unknown field 'file'/);
    rejects(() => parseServeConfigText('tier: fast'), 'tier', /.+/);
    rejects(() => parseServeConfigText('flows: [ { type: replicate, listen: "udp://127.0.0.1:1", allow: any, to: [nope] } ]'), 'flows[0].to[0]', /HOST:PORT/);
    rejects(() => parseServeConfigText('extra: 1'), '', /unknown field 'extra'/);
  });

  test('the checks across flows of sluice run apply (names, listen addresses)', () => {
    const flow = (name: string) => `{ name: ${name}, type: redirect, listen: "udp://127.0.0.1:5000", allow: any, to: "udp://127.0.0.1:6000" }`;
    assert.throws(() => parseServeConfigText(`flows: [ ${flow('a')}, ${flow('b')} ]`), PolicyValidationError);
    assert.throws(() => parseServeConfigText(`flows: [ ${flow('a')}, ${flow('a')} ]`), /name/);
  });

  test('YAML problems come with their line; a bomb is refused, not expanded', () => {
    assert.throws(() => parseServeConfigText('a: 1\na: 2\n', 'x.yaml'), /x\.yaml:2: .*unique/);
    const bomb = [
      'a: &a [1,1,1,1,1,1,1,1,1,1]',
      ...Array.from({ length: 9 }, (_, i) => `${'bcdefghij'[i]}: &${'bcdefghij'[i]} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(',')}]`),
    ].join('\n');
    assert.throws(() => parseServeConfigText(bomb), PolicyValidationError);
    assert.throws(() => parseServeConfigText('[1, 2]'), /expected a mapping/);
  });

  test('listen addresses', () => {
    assert.deepEqual(parseListenAddress(':9180'), { ok: true, listen: { host: '127.0.0.1', port: 9180 } });
    assert.deepEqual(parseListenAddress('[::]:0'), { ok: true, listen: { host: '::', port: 0 } });
    assert.deepEqual(parseListenAddress('localhost:1'), { ok: true, listen: { host: 'localhost', port: 1 } });
    assert.equal(formatListenAddress({ host: '::1', port: 5 }), '[::1]:5');
    assert.equal(formatListenAddress({ host: '10.0.0.1', port: 5 }), '10.0.0.1:5');
    assert.equal(parseListenAddress('9180').ok, false);
  });
});

describe('serve config file', () => {
  test('paths resolve against the config folder; default state beside it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-config-'));
    try {
      const file = join(dir, 'serve.yaml');
      writeFileSync(file, 'api: { tokenFile: tok, tls: { cert: c.pem, key: k.pem } }\ntpo: [ { config: sub/tpo.yaml } ]\n');
      const c = loadServeConfig(file);
      assert.equal(c.path, file);
      assert.equal(c.api.tokenFile, join(dir, 'tok'));
      assert.deepEqual(c.api.tls, { cert: join(dir, 'c.pem'), key: join(dir, 'k.pem') });
      assert.deepEqual(c.tpo, [{ config: join(dir, 'sub/tpo.yaml') }]);
      assert.equal(c.state, join(dir, 'serve.state.json'));
      writeFileSync(file, 'state: /var/x.json\n');
      assert.equal(loadServeConfig(file).state, '/var/x.json');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a FIFO, a missing file or invalid UTF-8 is refused with the path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-config-'));
    try {
      const fifo = join(dir, 'fifo.yaml');
      execFileSync('mkfifo', [fifo]);
      assert.throws(() => loadServeConfig(fifo), /FIFO/);
      assert.throws(() => loadServeConfig(join(dir, 'none.yaml')), /ENOENT/);
      writeFileSync(join(dir, 'bad.yaml'), Buffer.from([0xff, 0xfe, 0x00]));
      assert.throws(() => loadServeConfig(join(dir, 'bad.yaml')), /UTF-8/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('default token file: systemd StateDirectory, root, then XDG', () => {
    assert.equal(defaultTokenFile({ STATE_DIRECTORY: '/var/lib/x:/other' }, 1000), '/var/lib/x/api.token');
    assert.equal(defaultTokenFile({}, 0), '/var/lib/sluice/api.token');
    assert.equal(defaultTokenFile({ XDG_STATE_HOME: '/home/u/.st' }, 1000), '/home/u/.st/sluice/api.token');
    assert.match(defaultTokenFile({}, 1000), /\/\.local\/state\/sluice\/api\.token$/);
    assert.equal(defaultStateFile('/etc/sluice/serve.yaml'), '/etc/sluice/serve.state.json');
  });
});
