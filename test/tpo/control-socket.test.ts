/**
 * The gateway's control socket path as hostile ground (issue #16, item
 * 15): whatever is at the path is looked at, never followed, and only a
 * stale socket is removed; the default lives in a private 0700 directory;
 * `sluice tpo` reports a bad path plainly (exit 2, the path named, no
 * stack trace).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  chmodSync,
  chownSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlSocketError, defaultControlDir, defaultControlPath, fetchStatus, startControlServer } from '../../src/tpo/control-socket.js';
import { runCli } from '../../harness/process/cli.js';
import { freeUdpPort } from './gateway-helpers.js';

const status = () => ({ ok: true });

function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'sluice-ctl-'));
}

async function rejectsNaming(p: Promise<unknown>, path: string, reason: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ControlSocketError, `a ControlSocketError, got ${String(err)}`);
    assert.ok(err.message.includes(path), `names the path: ${err.message}`);
    assert.match(err.message, reason);
    return true;
  });
}

/** A socket file whose server died without removing it (as after SIGKILL). */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, [
    '-e',
    `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  await new Promise((r) => child.once('exit', r));
  assert.ok(lstatSync(path).isSocket(), 'the dead server left its socket file');
}

test('a directory at the control path is reported and left alone', async () => {
  const dir = scratch();
  try {
    const path = join(dir, 'gw.sock');
    mkdirSync(path);
    writeFileSync(join(path, 'keep'), 'x');
    await rejectsNaming(startControlServer(path, status), path, /is a directory; it is not removed/);
    assert.equal(readFileSync(join(path, 'keep'), 'utf8'), 'x');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a regular file at the control path is reported, not deleted', async () => {
  const dir = scratch();
  try {
    const path = join(dir, 'gw.sock');
    writeFileSync(path, 'precious');
    await rejectsNaming(startControlServer(path, status), path, /is a regular file; it is not removed/);
    assert.equal(readFileSync(path, 'utf8'), 'precious');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a symbolic link at the control path is not followed and not removed (to a file, to a socket, dangling)', async () => {
  const dir = scratch();
  try {
    const target = join(dir, 'target');
    writeFileSync(target, 'precious');
    const sockTarget = join(dir, 'real.sock');
    await staleSocket(sockTarget);
    for (const [name, to] of [
      ['file.sock', target],
      ['sock.sock', sockTarget],
      ['dangling.sock', join(dir, 'nothing')],
    ] as const) {
      const path = join(dir, name);
      symlinkSync(to, path);
      await rejectsNaming(startControlServer(path, status), path, /is a symbolic link; it is not removed/);
      assert.equal(readlinkSync(path), to, 'the link is still there');
    }
    assert.equal(readFileSync(target, 'utf8'), 'precious');
    assert.ok(lstatSync(sockTarget).isSocket(), "the link's socket target is untouched");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stale socket is replaced; a live one is reported and left serving', async () => {
  const dir = scratch();
  try {
    const path = join(dir, 'gw.sock');
    await staleSocket(path);
    const server = await startControlServer(path, status);
    try {
      assert.deepEqual(await fetchStatus(path), { ok: true });
      // A second gateway on the same path must not take the first one's socket away.
      await rejectsNaming(
        startControlServer(path, () => ({ second: true })),
        path,
        /already answers/,
      );
      assert.deepEqual(await fetchStatus(path), { ok: true }, 'the first still answers');
    } finally {
      await server.close();
    }
    assert.equal(existsSync(path), false, 'its own socket is removed at close');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the default path is in a private 0700 directory of this user; a symbolic link in its place is refused', async () => {
  // Where the default lives (not created here: as root it is /run/sluice).
  const uid = process.getuid?.();
  assert.equal(defaultControlDir(), uid === 0 ? '/run/sluice' : join(tmpdir(), `sluice-${uid}`));
  assert.equal(defaultControlPath('x'), join(defaultControlDir(), 'tpo-x.sock'));
  // The private-directory rules, on a directory of the test's own.
  const dir = scratch();
  try {
    const priv = join(dir, 'priv');
    const path = join(priv, 'tpo-t.sock');
    // Missing: created 0700.
    let server = await startControlServer(path, status, { privateDir: true });
    assert.equal(statSync(priv).mode & 0o777, 0o700);
    assert.equal(lstatSync(path).mode & 0o777, 0o600);
    assert.deepEqual(await fetchStatus(path), { ok: true });
    await server.close();
    // Present but looser (an earlier run, a hand-made one): tightened to 0700.
    chmodSync(priv, 0o755);
    server = await startControlServer(path, status, { privateDir: true });
    assert.equal(statSync(priv).mode & 0o777, 0o700);
    await server.close();
    // Replaced with a link to elsewhere (planted in a shared temp dir): refused, nothing made there.
    rmSync(priv, { recursive: true });
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o700 });
    symlinkSync(elsewhere, priv);
    await rejectsNaming(startControlServer(path, status, { privateDir: true }), path, /symbolic link, not a directory/);
    assert.equal(existsSync(join(elsewhere, 'tpo-t.sock')), false);
    if (uid === 0) {
      // Someone else's directory: refused (root can make one for another uid to check).
      rmSync(priv);
      mkdirSync(priv, { mode: 0o700 });
      chownSync(priv, 65534, 65534);
      await rejectsNaming(startControlServer(path, status, { privateDir: true }), path, /belongs to uid 65534/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  'sluice tpo with a directory or a file at its control path exits 2 naming the path, without a stack trace, and removes nothing',
  { timeout: 60_000 },
  async () => {
    const dir = scratch();
    try {
      for (const what of ['directory', 'file'] as const) {
        const control = join(dir, `${what}.sock`);
        if (what === 'directory') mkdirSync(control);
        else writeFileSync(control, 'precious');
        const config = join(dir, `${what}.json`);
        writeFileSync(
          config,
          JSON.stringify({
            name: `ctl-${what}`,
            listen: `127.0.0.1:${await freeUdpPort()}`,
            peers: [{ name: 'b', key: randomBytes(32).toString('hex') }],
            control,
          }),
        );
        const r = await runCli(['tpo', '--config', config, '--io', 'portable'], 30_000);
        assert.equal(r.code, 2, `${what}: exit code (stderr: ${r.stderr})`);
        assert.ok(r.stderr.includes(control), `${what}: names the path: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
        if (what === 'directory') assert.ok(statSync(control).isDirectory());
        else assert.equal(readFileSync(control, 'utf8'), 'precious');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('the control socket survives clients that misbehave', async () => {
  const dir = scratch();
  try {
    const path = join(dir, 'gw.sock');
    let calls = 0;
    const server = await startControlServer(path, () => {
      if (++calls === 1) throw new Error('status failed');
      return { ok: true };
    });
    try {
      // A status that throws is a 500 for that request, not the end of the server.
      assert.deepEqual(await fetchStatus(path), { error: 'status failed' });
      // Garbage, then a half-open connection, then a normal request.
      await new Promise<void>((resolve) => {
        const s = net.connect({ path }, () => s.end(randomBytes(2000)));
        s.on('close', () => resolve());
        s.on('error', () => resolve());
        s.resume();
      });
      const idle = net.connect({ path });
      idle.on('error', () => {});
      assert.deepEqual(await fetchStatus(path), { ok: true });
      idle.destroy();
    } finally {
      await server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Something that is not a well-behaved gateway answers on the socket:
 * `chunk` is called for each chunk of an endless chunked HTTP body (null:
 * stop sending, keep the connection open). Returns the bytes written.
 */
async function fakeStatusServer(
  path: string,
  chunk: (i: number) => Buffer | null,
  everyMs: number,
): Promise<{ written: () => number; close: () => Promise<void> }> {
  let written = 0;
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
      let i = 0;
      const next = () => {
        if (s.destroyed) return;
        const c = chunk(i++);
        if (!c) return;
        written += c.length;
        s.write(`${c.length.toString(16)}\r\n`);
        s.write(c);
        const more = s.write('\r\n');
        if (everyMs > 0) setTimeout(next, everyMs);
        else if (more) setImmediate(next);
        else s.once('drain', next);
      };
      next();
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  return {
    written: () => written,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

test('sluice status reads at most 64 MiB of an answer: a larger one is refused plainly (exit 1), not buffered', { timeout: 120_000 }, async () => {
  const dir = scratch();
  const path = join(dir, 'big.sock');
  const MiB = 1 << 20;
  const piece = Buffer.alloc(MiB, 0x20);
  // At most 160 MiB, then the server holds the connection open without ending the answer.
  const fake = await fakeStatusServer(path, (i) => (i < 160 ? piece : null), 0);
  try {
    const r = await runCli(['status', '--socket', path], 90_000);
    assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
    assert.match(r.stderr, /sluice status: .*big\.sock: the answer is larger than 64 MiB; not read further/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.ok(fake.written() < 160 * MiB, `the server wrote ${fake.written() / MiB} MiB: the reader stopped`);
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sluice status gives up on an answer that is not complete within 10 s (a server trickling bytes), plainly (exit 1)', { timeout: 120_000 }, async () => {
  const dir = scratch();
  const path = join(dir, 'slow.sock');
  // One byte every 200 ms, for ever: an idle timeout never fires.
  const fake = await fakeStatusServer(path, () => Buffer.from(' '), 200);
  try {
    const r = await runCli(['status', '--socket', path], 90_000);
    assert.equal(r.code, 1, `exit code (stderr: ${r.stderr}, signal ${r.signal})`);
    assert.match(r.stderr, /sluice status: .*slow\.sock: no complete answer within 10 s/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fetchStatus: its bounds are options; nobody at the path is said plainly', async () => {
  const dir = scratch();
  try {
    const path = join(dir, 'x.sock');
    const fake = await fakeStatusServer(path, (i) => (i < 8 ? Buffer.alloc(1024, 0x20) : null), 0);
    try {
      await assert.rejects(fetchStatus(path, { maxBytes: 4096 }), /larger than 4096 bytes/);
      await assert.rejects(fetchStatus(path, { timeoutMs: 300 }), /no complete answer within 0.3 s/);
    } finally {
      await fake.close();
    }
    await assert.rejects(fetchStatus(join(dir, 'nobody.sock')), /no gateway answers on .*nobody\.sock: ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
