/**
 * Issue 19: `sluice tpo` logs what a new user could not see, on both
 * gateways (two real CLI processes on loopback, explicit mode, no root):
 * keys that differ (the responder: handshakes fail authentication; the
 * initiator: the peer does not answer, and the waiting client is reset),
 * and a destination that refuses the connection (both sides, with the
 * flow's tuple). Logs are pino JSON lines on stderr (not a terminal); the
 * ready line stays as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { startCli } from '../../harness/process/cli.js';
import { clientOutcome, freeTcpPort, freeUdpPort, until } from './gateway-helpers.js';

interface Gw {
  child: ChildProcessWithoutNullStreams;
  stderr: () => string;
  /** The log records so far (stderr lines that parse as JSON). */
  records: () => Record<string, unknown>[];
  exit: Promise<number | null>;
}

function start(dir: string, name: string, config: object, extra: string[] = []): Promise<Gw> {
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify({ ...config, name, control: join(dir, `${name}.sock`) }));
  const child = startCli(['tpo', '--config', path, ...extra]);
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  child.stdout.resume();
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const gw: Gw = {
    child,
    stderr: () => err,
    records: () =>
      err.split('\n').flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    exit,
  };
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const poll = setInterval(() => {
      if (new RegExp(`sluice tpo: ${name} up`).test(err)) {
        clearInterval(poll);
        resolve(gw);
      } else if (child.exitCode !== null || performance.now() - t0 > 60_000) {
        clearInterval(poll);
        reject(new Error(`gateway ${name} did not start: ${err}`));
      }
    }, 50);
  });
}

async function stop(gw: Gw | undefined): Promise<number | null | undefined> {
  if (!gw || gw.child.exitCode !== null) return gw?.child.exitCode;
  gw.child.kill('SIGTERM');
  const timer = setTimeout(() => gw.child.kill('SIGKILL'), 20_000);
  const code = await gw.exit;
  clearTimeout(timer);
  return code;
}

const find = (gw: Gw, re: RegExp) => gw.records().find((r) => typeof r.msg === 'string' && re.test(r.msg));

test('sluice tpo with keys that differ: both gateways log it, the client is reset within limits.sessionWaitMs', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tpo-logs-'));
  const [portA, portB, listen] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort()];
  let a: Gw | undefined;
  let b: Gw | undefined;
  try {
    b = await start(dir, 'b', { listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key: randomBytes(32).toString('hex'), keyId: 1 }] });
    a = await start(
      dir,
      'a',
      {
        listen: `127.0.0.1:${portA}`,
        peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key: randomBytes(32).toString('hex'), keyId: 1 }],
        table: [{ name: 'web', protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: '127.0.0.1:9' }],
        limits: { sessionWaitMs: 1000 },
      },
      ['--log-level', 'info'],
    );
    const c = await clientOutcome(listen);
    assert.equal(c.outcome, 'reset', 'the client is reset, not left hanging');
    assert.ok(c.ms < 6_000, `within the bound: ${Math.round(c.ms)} ms`);

    await until('the logs', () => !!find(a!, /does not answer/) && !!find(a!, /no session with peer b/) && !!find(b!, /failed authentication/));
    const unreachable = find(a, /does not answer/)!;
    assert.equal(unreachable.level, 'warn');
    assert.equal(unreachable.gateway, 'a');
    assert.equal(unreachable.peer, 'b');
    assert.equal(unreachable.address, `127.0.0.1:${portB}`);
    assert.equal(typeof unreachable.time, 'string', 'an ISO time');
    assert.match(String(unreachable.msg), /keys or keyIds differ/);
    const noSession = find(a, /no session with peer b/)!;
    assert.equal(noSession.reason, 'noSession');
    assert.match(String(noSession.tuple), new RegExp(`^tcp 127\\.0\\.0\\.1:\\d+ > 127\\.0\\.0\\.1:9$`));
    const auth = find(b, /failed authentication/)!;
    assert.equal(auth.level, 'warn');
    assert.equal(auth.gateway, 'b');
    assert.equal(auth.peer, 'a');
    assert.equal(auth.reason, 'authentication');
    assert.match(String(auth.msg), new RegExp(`handshake from 127\\.0\\.0\\.1:${portA} for peer a failed authentication: the peers' keys differ`));
    // Coalesced with backoff, never a line per handshake (A sends several a second at first).
    const authLines = b.records().filter((r) => r.reason === 'authentication').length;
    assert.ok(authLines <= 4, `a few lines, not one per handshake: ${authLines}`);
    assert.equal(await stop(a), 0);
    assert.equal(await stop(b), 0);
  } finally {
    await stop(a);
    await stop(b);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sluice tpo: a destination that refuses the connection is logged on both gateways with the tuple', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tpo-logs-'));
  const [portA, portB, listen, closed] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort(), await freeTcpPort()];
  const key = randomBytes(32).toString('hex');
  let a: Gw | undefined;
  let b: Gw | undefined;
  try {
    b = await start(dir, 'b', { listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key, keyId: 1 }], deliver: { allow: ['127.0.0.1/32'] } });
    a = await start(dir, 'a', {
      listen: `127.0.0.1:${portA}`,
      peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key, keyId: 1 }],
      table: [{ name: 'web', protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: `127.0.0.1:${closed}` }],
    });
    await until('peer up logged on both', () => !!find(a!, /^peer up$/) && !!find(b!, /^peer up$/));
    const c = await clientOutcome(listen);
    assert.equal(c.outcome, 'reset');
    assert.ok(c.ms < 3_000, `promptly: ${Math.round(c.ms)} ms`);
    await until('connectFailed on both', () => !!find(a!, /could not connect/) && !!find(b!, /connect to .* failed/));
    const [ra, rb] = [find(a, /could not connect/)!, find(b, /connect to .* failed/)!];
    assert.equal(ra.tuple, rb.tuple);
    assert.deepEqual([ra.reason, ra.role, ra.peer, ra.status], ['connectFailed', 'source', 'b', 'connection refused']);
    assert.deepEqual([rb.reason, rb.role, rb.peer, rb.code], ['connectFailed', 'destination', 'a', 'ECONNREFUSED']);
    assert.equal(await stop(a), 0);
    assert.equal(await stop(b), 0);
  } finally {
    await stop(a);
    await stop(b);
    rmSync(dir, { recursive: true, force: true });
  }
});
