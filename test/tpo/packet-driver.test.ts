/**
 * The TPO packet driver: aggregation into driver buffers (size and
 * deadline), compression per buffer only where it pays, trust domains
 * never mixed, and decoding that refuses what does not add up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { PacketDriver, type SealedBuffer } from '../../src/tpo/protocol/packet-driver.js';
import { openDriverBuffer } from '../../src/wire/tpo/compression.js';
import { encodeDriverBuffer, encodeMessages, type CarriedMessage } from '../../src/wire/tpo/driver-buffer.js';
import { WireError } from '../../src/wire/tpo/errors.js';

const msg = (i: number, data: Uint8Array, flow = 1): CarriedMessage => ({
  header: {
    function: 'data',
    protocol: 'udp',
    sequence: i,
    src: { address: '10.0.0.1', port: 40000 + flow },
    dst: { address: '10.9.0.1', port: 5000 },
    status: 0,
    dataLength: data.length,
  },
  data,
});

function collect(options = {}) {
  const out: SealedBuffer[] = [];
  const driver = new PacketDriver((b) => out.push(b), options);
  return { driver, out };
}

test('chatty small messages become few buffers: 100-byte messages, at most 0.1 buffers per message', () => {
  const { driver, out } = collect();
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 20_000; i++) {
    const data = randomBytes(100);
    sent.push(data);
    driver.push(0, msg(i, data));
  }
  driver.close();
  const perMessage = out.length / 20_000;
  assert.ok(perMessage <= 0.1, `${out.length} buffers for 20,000 messages`);
  assert.ok(
    out.every((b) => b.bytes.length <= 32 * 1024),
    'no buffer over the maximum',
  );
  // Every message comes back, in order, byte-exact.
  const back = out.flatMap((b) => openDriverBuffer(b.bytes).messages);
  assert.equal(back.length, 20_000);
  back.forEach((m, i) => {
    assert.equal(m.header.sequence, i);
    assert.deepEqual(Buffer.from(m.data), Buffer.from(sent[i]!));
  });
});

test('a lone message leaves after the deadline, not before', async () => {
  // The seal's own time against the push's: a late timer (a busy machine) only makes it later.
  const sealedAt: number[] = [];
  const out: SealedBuffer[] = [];
  const driver = new PacketDriver(
    (b) => {
      sealedAt.push(performance.now());
      out.push(b);
    },
    { flushDelayMs: 20 },
  );
  const pushedAt = performance.now();
  driver.push(0, msg(0, new Uint8Array(10)));
  assert.equal(out.length, 0, 'not sealed at push');
  while (out.length === 0) await sleep(2); // the test's timeout catches a seal that never comes
  assert.equal(out.length, 1);
  assert.equal(out[0]!.reason, 'deadline');
  // Node's timers may fire up to a millisecond early against performance.now().
  assert.ok(sealedAt[0]! - pushedAt >= 19, `sealed ${sealedAt[0]! - pushedAt} ms after the push`);
  driver.close();
});

test('an urgent message (a thin flow) leaves at the end of the event-loop turn, with what was pushed in the same turn, not after the deadline', async () => {
  const { driver, out } = collect({ flushDelayMs: 10_000 });
  driver.push(0, msg(0, new Uint8Array(10)), true);
  driver.push(0, msg(1, new Uint8Array(10)), true);
  driver.push(0, msg(2, new Uint8Array(10)));
  assert.equal(out.length, 0, 'not sealed at push');
  await new Promise((r) => setImmediate(r));
  assert.equal(out.length, 1, 'the urgent buffer, and only it');
  assert.ok(out[0]!.urgent);
  assert.equal(out[0]!.messages, 2);
  assert.equal(out[0]!.reason, 'deadline');
  driver.close();
  assert.equal(out.length, 2, 'close seals the bulk buffer');
});

test('trust domains never share a buffer', () => {
  const { driver, out } = collect();
  for (let i = 0; i < 3000; i++) driver.push(i % 3, msg(i, Buffer.from(`secret-${i % 3}-`.repeat(10))));
  driver.close();
  for (const b of out) {
    const { header, messages } = openDriverBuffer(b.bytes);
    assert.equal(header.domain, b.domain);
    assert.ok(
      messages.every((m) => m.header.sequence % 3 === b.domain),
      'a message of another domain in the buffer',
    );
  }
  assert.deepEqual(new Set(out.map((b) => b.domain)), new Set([0, 1, 2]));
});

test('urgent messages get buffers of their own, flagged, in the same domain', () => {
  const { driver, out } = collect();
  for (let i = 0; i < 200; i++) driver.push(1, msg(i, randomBytes(i % 10 === 0 ? 100 : 1000)), i % 10 === 0);
  driver.close();
  const urgent = out.filter((b) => b.urgent);
  assert.ok(urgent.length >= 1 && urgent.length < out.length);
  for (const b of out) {
    const { header, messages } = openDriverBuffer(b.bytes);
    assert.equal(header.domain, 1);
    assert.ok(
      messages.every((m) => (m.header.sequence % 10 === 0) === b.urgent),
      'urgent and other messages mixed in a buffer',
    );
  }
  assert.equal(
    out.reduce((n, b) => n + b.messages, 0),
    200,
  );
});

test('text compresses; random data goes uncompressed and grows by framing only', () => {
  const text = Buffer.from(Array.from({ length: 400 }, (_, i) => `{"id":${i},"user":"u${i % 17}","action":"view","path":"/items/${i}"}\n`).join(''));
  const t = collect();
  for (let i = 0; i * 1000 < text.length; i++) t.driver.push(0, msg(i, text.subarray(i * 1000, (i + 1) * 1000)));
  t.driver.close();
  const textRaw = t.out.reduce((n, b) => n + b.rawBytes, 0);
  const textWire = t.out.reduce((n, b) => n + b.bytes.length, 0);
  assert.ok(
    t.out.every((b) => b.codec === 'brotli'),
    'text went compressed',
  );
  assert.ok(textWire < textRaw * 0.5, `text: ${textWire} bytes on the wire for ${textRaw}`);

  const r = collect();
  const random = randomBytes(256 * 1024);
  for (let i = 0; i * 1000 < random.length; i++) r.driver.push(0, msg(i, random.subarray(i * 1000, (i + 1) * 1000)));
  r.driver.close();
  assert.ok(
    r.out.every((b) => b.codec === 'none'),
    'random data went uncompressed',
  );
  const raw = r.out.reduce((n, b) => n + b.rawBytes, 0);
  const wire = r.out.reduce((n, b) => n + b.bytes.length, 0);
  // Compression adds nothing; only the routing headers (20 B per buffer) are added to the raw messages.
  assert.equal(wire, raw + 20 * r.out.length);
  assert.ok(r.driver.stats.notCompressible === r.out.length);
});

test('decoding refuses a payload that decompresses beyond its declared length, or to less', () => {
  const raw = encodeMessages([msg(0, new Uint8Array(5000))]);
  const packed = zlib.deflateRawSync(raw);
  const lying = encodeDriverBuffer({ function: 'messages', codec: 'deflate', domain: 0, count: 1, rawLength: 100 }, packed);
  assert.throws(
    () => openDriverBuffer(lying),
    (e: unknown) => e instanceof WireError && e.reason === 'length',
  );
  const short = encodeDriverBuffer({ function: 'messages', codec: 'deflate', domain: 0, count: 1, rawLength: raw.length + 10 }, packed);
  assert.throws(
    () => openDriverBuffer(short),
    (e: unknown) => e instanceof WireError && e.reason === 'length',
  );
  const garbage = encodeDriverBuffer({ function: 'messages', codec: 'brotli', domain: 0, count: 1, rawLength: 50 }, randomBytes(40));
  assert.throws(
    () => openDriverBuffer(garbage),
    (e: unknown) => e instanceof WireError,
  );
});

test('a message larger than a buffer can hold is refused, naming the limit', () => {
  const { driver } = collect({ maxBufferBytes: 4096 });
  assert.equal(driver.maxMessageData(false), 4096 - 20 - 28);
  assert.throws(() => driver.push(0, msg(0, new Uint8Array(driver.maxMessageData(false) + 1))), /exceeds the driver buffer maximum/);
  driver.push(0, msg(0, new Uint8Array(driver.maxMessageData(false))));
  driver.close();
});

/**
 * A message the wire cannot carry (a field out of range, addresses of two
 * families, a function or protocol it has no code for, a lying dataLength,
 * a domain beyond 255) is refused by push() itself, with a WireError the
 * caller can count: the driver encodes when it seals, from a timer, and a
 * throw there would end the process and lose every other message of the
 * buffer.
 */
test("push refuses a message the wire cannot carry, at once; nothing throws later from the deadline timer and the buffer's other messages arrive", async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  try {
    const { driver, out } = collect({ flushDelayMs: 5 });
    const good = msg(0, Buffer.from('before'));
    const h = good.header;
    const bad: [string, number, CarriedMessage][] = [
      ['status', 0, { header: { ...h, status: 300 }, data: good.data }],
      ['src.port', 0, { header: { ...h, src: { address: '10.0.0.1', port: 70000 } }, data: good.data }],
      ['dst.port', 0, { header: { ...h, dst: { address: '10.9.0.1', port: -1 } }, data: good.data }],
      ['sequence', 0, { header: { ...h, sequence: 2 ** 32 }, data: good.data }],
      ['address', 0, { header: { ...h, dst: { address: '::1', port: 5000 } }, data: good.data }],
      ['address', 0, { header: { ...h, src: { address: 'not-an-address', port: 1 }, dst: { address: 'nor-this', port: 1 } }, data: good.data }],
      ['function', 0, { header: { ...h, function: 'bogus' as never }, data: good.data }],
      ['protocol', 0, { header: { ...h, protocol: 'sctp' as never }, data: good.data }],
      ['dataLength', 0, { header: { ...h, dataLength: 99 }, data: good.data }],
      ['domain', 256, good],
      ['domain', -1, good],
    ];
    driver.push(0, good);
    for (const [field, domain, m] of bad) {
      assert.throws(
        () => driver.push(domain, m),
        (e: unknown) => e instanceof WireError && e.field === field,
        `a bad ${field} is refused by push`,
      );
    }
    driver.push(0, msg(1, Buffer.from('after')));
    // Past the deadline: the open buffer is sealed from the timer.
    while (out.length === 0) await sleep(5);
    await sleep(20);
    assert.deepEqual(uncaught, [], 'nothing was thrown from a timer');
    const back = out.flatMap((b) => openDriverBuffer(b.bytes).messages);
    assert.deepEqual(
      back.map((m) => Buffer.from(m.data).toString()),
      ['before', 'after'],
    );
    assert.equal(driver.stats.messages, 2);
    driver.close();
  } finally {
    process.off('uncaughtException', onUncaught);
  }
});

test('a message is copied at push: the caller may reuse its buffer at once', () => {
  const { driver, out } = collect();
  const scratch = Buffer.from('first');
  driver.push(0, msg(0, scratch));
  scratch.write('XXXXX');
  driver.push(0, msg(1, scratch));
  driver.close();
  const back = out.flatMap((b) => openDriverBuffer(b.bytes).messages);
  assert.deepEqual(
    back.map((m) => Buffer.from(m.data).toString()),
    ['first', 'XXXXX'],
  );
});

test('a consumer that throws when the deadline seals is counted, not thrown from the timer', async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('uncaughtException', onUncaught);
  process.on('warning', onWarning);
  try {
    let calls = 0;
    const driver = new PacketDriver(
      () => {
        calls++;
        throw new Error('consumer bug');
      },
      { flushDelayMs: 2 },
    );
    driver.push(0, msg(0, Buffer.from('x')));
    while (calls === 0) await sleep(2);
    await sleep(20);
    assert.deepEqual(uncaught, []);
    assert.equal(driver.stats.sealFailures, 1);
    assert.ok(
      warnings.some((w) => /sealed buffer was lost/.test(w.message)),
      'reported as a warning',
    );
  } finally {
    process.off('uncaughtException', onUncaught);
    process.off('warning', onWarning);
  }
});

test('a domain that sent incompressible data for long still compresses again within 257 buffers once its data compresses', () => {
  const r = collect({ maxBufferBytes: 4096 });
  let i = 0;
  // 2,000 buffers of random data: after the first give-ups the skips double up to 256 buffers.
  for (let k = 0; k < 2000; k++) r.driver.push(0, msg(i++, randomBytes(3000)));
  r.driver.flush();
  const before = r.out.length;
  const text = Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(70)).subarray(0, 3000);
  for (let k = 0; k < 300; k++) r.driver.push(0, msg(i++, text));
  r.driver.close();
  const after = r.out.slice(before);
  const first = after.findIndex((b) => b.codec === 'brotli');
  assert.ok(first >= 0 && first <= 257, `text compressed again after ${first} buffers`);
  assert.ok(
    after.slice(first).every((b) => b.codec === 'brotli'),
    'and from then on',
  );
});
