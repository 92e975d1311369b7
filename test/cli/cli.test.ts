import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, startCli, collect, waitForEvent } from '../../harness/process/cli.js';
import { openReceiver, openSender, sendSequence, seqOf } from '../../harness/traffic/udp.js';

describe('sluice CLI', () => {
  test('--help works for the program and every subcommand', async () => {
    for (const args of [['--help'], ['relay', '--help'], ['run', '--help'], ['demo', '--help'], ['doctor', '--help'], ['validate', '--help']]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /Usage: sluice/);
    }
  });

  test('usage and policy errors exit 2 and name the flag or field', async () => {
    let r = await runCli(['relay', '--listen', 'udp://127.0.0.1:5000', '--to', 'udp://127.0.0.1:6000']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--allow: required/);
    r = await runCli(['relay', '--listen', 'udp://127.0.0.1:5000', '--to', 'udp://127.0.0.1:99999', '--allow', 'any']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /to: port 99999 is out of range/);
    r = await runCli(['relay', '--listen', 'udp://127.0.0.1:5000', '--to', 'udp://127.0.0.1:6000', '--to', 'udp://localhost:6001', '--allow', 'any']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /to\[1\]: host 'localhost' is not an IPv4 or IPv6 address literal/);
    r = await runCli(['relay', '--listen', 'udp://127.0.0.1:5000', '--bogus']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--bogus'/);
    r = await runCli(['nosuchcommand']);
    assert.equal(r.code, 2);
    // Numbers out of range: a stats interval past Node's timer limit would fire every millisecond.
    for (const [flag, value] of [
      ['--stats-interval', '1e9'],
      ['--stats-interval', '1e400'],
      ['--batch-hold', '5000'],
      ['--max-datagram', '70000'],
    ]) {
      r = await runCli(['relay', '--listen', 'udp://127.0.0.1:0', '--to', 'udp://127.0.0.1:6000', '--allow', 'any', flag!, value!]);
      assert.equal(r.code, 2, `${flag} ${value}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${flag}.*expected a(n integer| number) from`));
    }
  });

  test('an unavailable tier exits 3 and says why', async () => {
    // The kernel tier needs root or CAP_BPF+CAP_NET_ADMIN: run as nobody when root.
    const r = await runCli(['relay', '--listen', 'udp://127.0.0.1:0', '--to', 'udp://127.0.0.1:6000', '--allow', 'any', '--tier', 'kernel'], undefined, {
      asNobody: true,
    });
    // (Exit 1 with EACCES here means the clone is not readable by nobody, e.g. under /root.)
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /tier 'kernel' is unavailable: /);
  });

  test('doctor lists every tier with a reason', async () => {
    const r = await runCli(['doctor']);
    assert.equal(r.code, 0);
    for (const tier of ['kernel', 'batched', 'portable']) assert.match(r.stdout, new RegExp(`^${tier}\\s+(yes|no)\\s+\\S`, 'm'));
    // And the tcp-redirect paths: each says yes, or no with why.
    for (const path of ['splice', 'sockmap', 'userspace']) assert.match(r.stdout, new RegExp(`^${path}\\s+(yes|no)\\s+\\S`, 'm'));
  });

  test('relay forwards, stops on SIGTERM and prints final counters as JSON', async () => {
    const dst = await openReceiver();
    const src = await openSender();
    const child = startCli(['relay', '--listen', 'udp://127.0.0.1:0', '--to', dst.url, '--allow', '127.0.0.1', '--json']);
    const done = collect(child);
    const ready = (await waitForEvent(child, 'ready')) as { flows: { listen: string }[] };
    const port = Number(/:(\d+)$/.exec(ready.flows[0]!.listen)![1]);
    await sendSequence(src, { port, address: '127.0.0.1' }, 300);
    await dst.waitFor(300);
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    const final = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { event: string; signal: string; flows: { packetsIn: number; packetsOut: number }[] };
    assert.equal(final.event, 'final');
    assert.equal(final.signal, 'SIGTERM');
    assert.equal(final.flows[0]!.packetsIn, 300);
    assert.equal(final.flows[0]!.packetsOut, 300);
    assert.deepEqual(
      dst.received.map(seqOf),
      Array.from({ length: 300 }, (_, i) => i),
    );
    await dst.close();
    await src.close();
  });

  test('run --config replicates per the file and prints a final table on SIGINT', async () => {
    const [a, b] = await Promise.all([openReceiver(), openReceiver()]);
    const src = await openSender();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-cli-'));
    const file = join(dir, 'sluice.yaml');
    await writeFile(
      file,
      `tier: portable\nflows:\n  - name: fan\n    type: replicate\n    listen: udp://127.0.0.1:0\n    allow: 127.0.0.0/8\n    to: [${a.url}, ${b.url}]\n`,
    );
    const child = startCli(['run', '--config', file, '--json']);
    const done = collect(child);
    const ready = (await waitForEvent(child, 'ready')) as { flows: { listen: string }[] };
    const port = Number(/:(\d+)$/.exec(ready.flows[0]!.listen)![1]);
    await sendSequence(src, { port, address: '127.0.0.1' }, 100);
    await a.waitFor(100);
    await b.waitFor(100);
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"event":"final"/);
    assert.match(r.stdout, /"packetsOut":200/);
    await Promise.all([a.close(), b.close(), src.close(), rm(dir, { recursive: true })]);
  });

  test('run re-reads the config on SIGHUP: changes apply in place, a bad file changes nothing', async () => {
    const [a, b, c, d] = await Promise.all([openReceiver(), openReceiver(), openReceiver(), openReceiver()]);
    const src = await openSender();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-cli-'));
    const file = join(dir, 'sluice.yaml');
    const flow = (name: string, port: number, to: string[]) =>
      `  - {name: ${name}, type: replicate, listen: "udp://127.0.0.1:${port}", allow: 127.0.0.1, to: [${to.map((u) => `"${u}"`).join(', ')}]}\n`;
    // Fixed ports are needed so the reloaded file can name the same listen address; pick free ones.
    const free = await Promise.all([openReceiver(), openReceiver()]);
    const [p1, p2] = free.map((r) => r.port) as [number, number];
    await Promise.all(free.map((r) => r.close()));
    await writeFile(file, `flows:\n${flow('fan', p1, [a.url, b.url])}`);
    const child = startCli(['run', '--config', file, '--json']);
    const done = collect(child);
    await waitForEvent(child, 'ready');
    const target = { port: p1, address: '127.0.0.1' };
    await sendSequence(src, target, 2000, {
      onProgress: async (seq) => {
        if (seq === 700) {
          await writeFile(file, `flows:\n${flow('fan', p1, [a.url, c.url])}${flow('extra', p2, [d.url])}`);
          child.kill('SIGHUP');
          const ev = (await waitForEvent(child, 'reload')) as { ok: boolean; updated: string[]; added: string[] };
          assert.deepEqual([ev.ok, ev.updated, ev.added], [true, ['fan'], ['extra']]);
        }
        if (seq === 1400) {
          await writeFile(file, `flows:\n  - {name: fan, type: replicate, listen: "udp://127.0.0.1:${p1}", to: []}\n`);
          child.kill('SIGHUP');
          const ev = (await waitForEvent(child, 'reload')) as { ok: boolean; error: string };
          assert.equal(ev.ok, false);
          assert.match(ev.error, /allow: required/);
        }
      },
    });
    await a.waitFor(2000);
    await c.settle();
    await src.send(Buffer.from('x'), p2, '127.0.0.1');
    await d.waitFor(1);
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    // The kept subscriber lost nothing across both reloads; the new one got a suffix.
    assert.deepEqual(
      a.received.map(seqOf),
      Array.from({ length: 2000 }, (_, i) => i),
    );
    assert.ok(b.received.length >= 700 && b.received.length < 2000);
    assert.equal(c.received.map(seqOf).at(-1), 1999);
    await Promise.all([a, b, c, d, src].map((x) => x.close()));
    await rm(dir, { recursive: true });
  });

  test('bad config files exit 2 with the line or the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-cli-'));
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'flows:\n  - type: redirect\n    listen: udp://127.0.0.1:5000\n    to: udp://127.0.0.1:6000\n    allow: any\n    colour: red\n');
    let r = await runCli(['run', '--config', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /flows\[0\]: unknown field 'colour'/);
    await writeFile(bad, 'flows: [\n');
    r = await runCli(['validate', '--config', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml:\d+/);
    r = await runCli(['run', '--config', join(dir, 'missing.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot read .*missing\.yaml: ENOENT/);
    r = await runCli(['validate', '--config', 'examples/sluice.yaml']);
    assert.equal(r.code, 0, r.stderr);
    await rm(dir, { recursive: true });
  });

  test('validate refuses what run refuses (relay loops, duplicate subscribers, one listen for two flows), naming file and flow', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-cli-'));
    const file = (name: string) => join(dir, name);
    const flow = (name: string, listen: string, to: string[]) =>
      `  - {name: ${name}, type: replicate, listen: "${listen}", allow: any, to: [${to.map((u) => `"${u}"`).join(', ')}]}\n`;
    try {
      await writeFile(file('self.yaml'), `flows:\n${flow('self', 'udp://0.0.0.0:47001', ['udp://[::ffff:127.0.0.1]:47001'])}`);
      await writeFile(
        file('cycle.yaml'),
        `flows:\n${flow('a', 'udp://0.0.0.0:47001', ['udp://127.0.0.1:47002'])}${flow('b', 'udp://127.0.0.1:47002', ['udp://127.0.0.1:47001'])}`,
      );
      await writeFile(file('dup.yaml'), `flows:\n${flow('d', 'udp://127.0.0.1:47001', ['udp://127.0.0.1:47009', 'udp://127.0.0.1:47009'])}`);
      await writeFile(
        file('overlap.yaml'),
        `flows:\n${flow('a', 'udp://127.0.0.1:47001', ['udp://127.0.0.1:47009'])}${flow('b', 'udp://0.0.0.0:47001', ['udp://127.0.0.1:47008'])}`,
      );
      const cases: [string, RegExp][] = [
        [
          'self.yaml',
          /self\.yaml: flows\[0\]\.to\[0\]: udp:\/\/\[::ffff:127\.0\.0\.1\]:47001 reaches the flow's own listen address udp:\/\/0\.0\.0\.0:47001, a relay loop/,
        ],
        ['cycle.yaml', /cycle\.yaml: flows\[0\]\.to\[0\]: .*a relay loop: flow 'a' → flow 'b' → flow 'a'/],
        ['dup.yaml', /dup\.yaml: flows\[0\]\.to\[1\]: udp:\/\/127\.0\.0\.1:47009 is listed twice/],
        ['overlap.yaml', /overlap\.yaml: flows\[1\]\.listen: udp:\/\/0\.0\.0\.0:47001 overlaps flow 'a' on udp:\/\/127\.0\.0\.1:47001/],
      ];
      // Two CLI processes at a time, with a deadline that only catches a hang: eight cold tsx
      // starts at once took over 30 s on a loaded 2-core host and were killed (code null).
      for (const [name, why] of cases) {
        const pair = await Promise.all([
          runCli(['validate', '--config', file(name)], 120_000),
          runCli(['run', '--tier', 'portable', '--config', file(name)], 120_000),
        ]);
        for (const r of pair) {
          assert.equal(r.code, 2, `${name}: ${r.stderr}`);
          assert.match(r.stderr, why);
        }
      }
      const relay = await runCli(['relay', '--tier', 'portable', '--listen', 'udp://0.0.0.0:47003', '--to', 'udp://127.0.0.1:47003', '--allow', 'any']);
      assert.equal(relay.code, 2, relay.stderr);
      assert.match(relay.stderr, /to: udp:\/\/127\.0\.0\.1:47003 reaches the flow's own listen address udp:\/\/0\.0\.0\.0:47003, a relay loop/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a listen address in use exits 1 naming bind and the errno', async () => {
    const holder = await openReceiver();
    const r = await runCli(['relay', '--listen', holder.url, '--to', 'udp://127.0.0.1:9', '--allow', 'any']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bind failed: EADDRINUSE/);
    await holder.close();
  });

  test('demo streams, checks continuity and exits 0 when nothing is lost', async () => {
    const r = await runCli(['demo', '--duration', '2s', '--subscribers', '3', '--bitrate', '4M']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /PASS/);
    // auto: the fastest tier this host offers.
    assert.match(r.stdout, /^(kernel|batched|portable)\s+3\s+\d+/m);
    assert.match(r.stderr, /\[\s+1s\]/);
  });
});
