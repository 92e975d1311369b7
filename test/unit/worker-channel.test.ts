/**
 * src/worker: the one way Sluice starts a worker thread and talks to it
 * (issue 17, item 2). A fixture worker (test/fixtures/channel-worker.ts)
 * answers, notifies, fails and stops on request; these tests pin what the
 * application side sees: ready, replies by id, notifications in order,
 * errors rebuilt as their own class, 'failed' when the worker dies on its
 * own, and a close() that is idempotent and leaves no request hanging.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WorkerChannel } from '../../src/worker/channel.js';
import { workerEntry } from '../../src/worker/spawn.js';
import { fromErrorInfo, toErrorInfo } from '../../src/worker/protocol.js';
import { ClosedError, EngineFailedError, InvalidArgumentError, NotSupportedError, SluiceError, SyscallError } from '../../src/errors.js';
import type { FixtureData, FixtureNotifications, FixtureRequests } from '../fixtures/channel-worker.js';

const ENGINE = "the test engine (worker thread 'sluice-test')";
const entry = new URL('../fixtures/channel-worker.ts', import.meta.url);

function start(data: FixtureData = {}, extra: { errorContext?: string; wake?: () => void } = {}) {
  return WorkerChannel.start<FixtureRequests, FixtureNotifications, unknown, FixtureData>({
    spawn: { entry, name: 'sluice-test', workerData: data },
    engine: ENGINE,
    ...extra,
  });
}

describe('WorkerChannel', () => {
  test('start waits for ready and carries its info; replies find their request by id', async () => {
    const ch = await start({ info: { scheduling: 'normal' } });
    try {
      assert.deepEqual(ch.readyInfo, { scheduling: 'normal' });
      const answers = await Promise.all([1, 2, 3, 4].map((v) => ch.request('echo', { value: { v } })));
      assert.deepEqual(answers, [{ v: 1 }, { v: 2 }, { v: 3 }, { v: 4 }]);
      assert.equal(ch.pending, 0);
    } finally {
      await ch.close({ terminateAfterMs: 0 });
    }
  });

  test('notifications arrive in order, before the reply that follows them settles', async () => {
    const ch = await start();
    try {
      const seen: number[] = [];
      ch.on('tick', (d) => seen.push(d.n));
      const r = await ch.request('ticks', { count: 5 });
      assert.equal(r, 'done');
      assert.deepEqual(seen, [0, 1, 2, 3, 4]);
    } finally {
      await ch.close({ terminateAfterMs: 0 });
    }
  });

  test('a reply can move a buffer instead of copying it', async () => {
    const ch = await start();
    try {
      const b = await ch.request('buffer', { size: 1000 });
      assert.ok(b instanceof ArrayBuffer);
      assert.equal(b.byteLength, 1000);
      assert.equal(new Uint8Array(b)[999], 7);
    } finally {
      await ch.close({ terminateAfterMs: 0 });
    }
  });

  test("a handler's error is rebuilt as its own class; others become SLUICE_ERR_ENGINE with the worker's message", async () => {
    const ch = await start({}, { errorContext: 'test worker' });
    try {
      await assert.rejects(ch.request('fail', { how: 'syscall' }), (e: unknown) => {
        assert.ok(e instanceof SyscallError);
        assert.equal(e.op, 'sendmmsg');
        assert.equal(e.errno, 'EPERM');
        assert.equal(e.detail, 'udp://192.0.2.1:9');
        assert.equal(e.message, 'sendmmsg failed: EPERM (udp://192.0.2.1:9)');
        return true;
      });
      await assert.rejects(ch.request('fail', { how: 'invalid' }), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.equal(e.code, 'SLUICE_ERR_INVALID_ARGUMENT');
        assert.equal(e.name, 'InvalidArgumentError');
        assert.equal(e.message, "no flow with id 'x'");
        return true;
      });
      await assert.rejects(ch.request('fail', { how: 'plain' }), (e: unknown) => {
        assert.ok(e instanceof SluiceError);
        assert.equal(e.code, 'SLUICE_ERR_ENGINE');
        assert.equal(e.message, 'test worker: plain trouble');
        return true;
      });
      await assert.rejects(ch.request('nonsense' as 'echo', { value: 1 }), /unknown request 'nonsense'/);
      // The worker is still there.
      assert.equal(await ch.request('echo', { value: 'still here' }), 'still here');
    } finally {
      await ch.close({ terminateAfterMs: 0 });
    }
  });

  test("a fault no request waits for is a 'fault' event with its scope; the worker goes on", async () => {
    const ch = await start();
    try {
      const faults: [SluiceError, string | undefined][] = [];
      ch.on('fault', (e, scope) => faults.push([e, scope]));
      let failed = false;
      ch.on('failed', () => (failed = true));
      await ch.request('fault', { fatal: false });
      assert.equal(faults.length, 1);
      assert.ok(faults[0]![0] instanceof SyscallError);
      assert.equal(faults[0]![1], 'flow-1');
      assert.equal(await ch.request('echo', { value: 1 }), 1);
      assert.equal(failed, false);
    } finally {
      await ch.close({ terminateAfterMs: 0 });
    }
  });

  test("a fatal fault fails the channel: 'failed' once, later requests reject with the same error", async () => {
    const ch = await start();
    try {
      const failures: EngineFailedError[] = [];
      ch.on('failed', (e) => failures.push(e));
      await ch.request('fault', { fatal: true }).catch(() => undefined);
      assert.equal(failures.length, 1);
      assert.ok(failures[0] instanceof EngineFailedError);
      assert.equal(failures[0].message, `${ENGINE} stopped: recvmmsg failed: EBADF`);
      assert.ok(failures[0].cause instanceof SyscallError);
      assert.equal(ch.failure, failures[0]);
      await assert.rejects(ch.request('echo', { value: 1 }), (e: unknown) => e === failures[0]);
    } finally {
      await ch.close({ terminateAfterMs: 0 });
    }
  });

  test("a worker that exits on its own: 'failed' with its exit code, every pending request rejected with it", async () => {
    const ch = await start();
    const failed = new Promise<EngineFailedError>((resolve) => ch.once('failed', resolve));
    const a = ch.request('exit', { code: 3 });
    const b = ch.request('echo', { value: 'never answered' });
    const error = await failed;
    assert.equal(error.message, `${ENGINE} stopped: its thread exited (code 3)`);
    assert.equal(error.code, 'SLUICE_ERR_ENGINE_FAILED');
    await assert.rejects(a, (e: unknown) => e === error);
    await assert.rejects(b, (e: unknown) => e === error);
    assert.equal(await ch.exited, 3);
    assert.equal(ch.exitCode, 3);
    await ch.close();
  });

  test("an uncaught exception in the worker is 'failed' with 'uncaught <name>: <message>'", async () => {
    const ch = await start();
    const failed = new Promise<EngineFailedError>((resolve) => ch.once('failed', resolve));
    await ch.request('crash', { message: 'boom' });
    const error = await failed;
    assert.equal(error.message, `${ENGINE} stopped: uncaught Error: boom`);
    await assert.rejects(ch.request('echo', { value: 1 }), (e: unknown) => e === error);
    await ch.close();
  });

  test('start rejects, leaving no thread, when the worker throws, exits or crashes before ready', async () => {
    await assert.rejects(start({ start: 'throw' }), (e: unknown) => e instanceof SyscallError && e.message === 'bind failed: EADDRINUSE (127.0.0.1:9)');
    await assert.rejects(
      start({ start: 'exit' }),
      (e: unknown) => e instanceof EngineFailedError && e.message === `${ENGINE} stopped: its thread exited (code 3) before it was ready`,
    );
    await assert.rejects(start({ start: 'uncaught' }), (e: unknown) => e instanceof Error && /broken at start/.test(e.message));
  });

  test('close() is idempotent, rejects pending requests with ClosedError and emits no failure', async () => {
    const ch = await start();
    let failed = false;
    ch.on('failed', () => (failed = true));
    const pending = ch.request('block', { ms: 10_000 });
    const first = ch.close({ terminateAfterMs: 0 });
    assert.equal(ch.close(), first, 'the same promise');
    assert.equal(ch.closed, true);
    await assert.rejects(ch.request('echo', { value: 1 }), (e: unknown) => e instanceof ClosedError && e.message === `${ENGINE} is closed`);
    assert.equal(await first, false);
    await assert.rejects(pending, ClosedError);
    assert.equal(failed, false);
    assert.equal(ch.failure, undefined);
  });

  test('close() with a request: the worker answers it and ends by itself', async () => {
    let wakes = 0;
    const ch = await start({ mode: 'poll' }, { wake: () => wakes++ });
    assert.equal(await ch.request('echo', { value: 'polled' }), 'polled');
    assert.equal(wakes, 1, 'wake() after every request');
    assert.equal(await ch.close({ request: 'close', terminateAfterMs: 10_000 }), true);
    assert.equal(ch.exitCode, 0);
    assert.equal(ch.failure, undefined);
  });

  test('close() with a stop flag: the loop sees it and the thread ends', async () => {
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const ch = await start({ mode: 'poll', stop });
    assert.equal(await ch.close({ stopFlag: stop, terminateAfterMs: 10_000 }), false);
    assert.equal(Atomics.load(stop, 0), 1);
    assert.equal(ch.exitCode, 0);
    assert.equal(ch.failure, undefined);
  });

  test('keepAlive: a channel kept alive only while busy lets the process exit once its requests are answered', { timeout: 60_000 }, () => {
    const channel = fileURLToPath(new URL('../../src/worker/channel.ts', import.meta.url));
    const script = `
      import { WorkerChannel } from ${JSON.stringify(channel)};
      const ch = await WorkerChannel.start({ spawn: { entry: new URL(${JSON.stringify(entry.href)}), name: 'sluice-test' }, engine: 'e', keepAlive: () => false });
      console.log(await ch.request('echo', { value: 'answered' }));
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.error, undefined, `the process exited by itself (${r.error?.message})`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'answered');
  });
});

describe('ErrorInfo', () => {
  test('round trip keeps the class, code, message and fields of the errors the workers raise', () => {
    const cases = [
      new SyscallError('bind', 'EADDRINUSE', '127.0.0.1:5000'),
      new SyscallError('recvmmsg', 'EBADF'),
      new InvalidArgumentError('bad'),
      new ClosedError('the thing'),
      new NotSupportedError('no GSO', 'kernel too old'),
    ];
    for (const e of cases) {
      const back = fromErrorInfo(structuredClone(toErrorInfo(e)));
      assert.equal(back.constructor, e.constructor);
      assert.equal(back.name, e.name);
      assert.equal(back.code, e.code);
      assert.equal(back.message, e.message);
    }
    const ns = fromErrorInfo(toErrorInfo(new NotSupportedError('no GSO', 'kernel too old')));
    assert.ok(ns instanceof NotSupportedError);
    assert.equal(ns.reason, 'kernel too old');
  });

  test('a SluiceError of another class keeps its code; anything else is SLUICE_ERR_ENGINE', () => {
    const other = new SluiceError('SLUICE_ERR_FILE_REFUSED', 'x');
    other.name = 'SomethingError';
    const back = fromErrorInfo(toErrorInfo(other));
    assert.equal(back.code, 'SLUICE_ERR_FILE_REFUSED');
    assert.equal(back.message, 'x');
    assert.equal(fromErrorInfo(toErrorInfo(new Error('y'))).code, 'SLUICE_ERR_ENGINE');
    assert.equal(fromErrorInfo(toErrorInfo('just a string'), 'ctx').message, 'ctx: just a string');
  });
});

test('workerEntry picks the extension of the module asking', () => {
  assert.equal(workerEntry('file:///a/b/plane.ts', './worker').href, 'file:///a/b/worker.ts');
  assert.equal(workerEntry('file:///a/b/plane.js', './worker').href, 'file:///a/b/worker.js');
});
