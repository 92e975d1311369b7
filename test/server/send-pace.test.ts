/**
 * The daemon's stream jobs paced by the stream's own clock (issue 20,
 * item 5): `pace: 'pcr'` with a TS payload runs to its end and sends
 * every byte; a payload that gives no clock, or a bitrate-paced stream
 * without a bitrate, is a 400 saying why.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openReceiver } from '../../harness/traffic/udp.js';
import { startApi, type Api } from './api-helpers.js';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';

describe('send jobs with pace', () => {
  let api: Api;
  before(async () => {
    api = await startApi();
  });
  after(async () => {
    await api.close();
  });

  test("pace 'pcr': a TS payload goes out whole by its PCRs; the job reports the media time", async () => {
    const sink = await openReceiver();
    try {
      const synth = new SyntheticTsStream({ bitrateBps: 2_000_000 });
      const ts = Buffer.concat(Array.from({ length: 30 }, () => synth.nextDatagram())); // ~158 ms
      const r = await api.call('POST', '/v1/sends', { kind: 'stream', streams: [{ to: sink.url, pace: 'pcr', payload: ts.toString('base64') }] });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      let job: any;
      for (let i = 0; i < 200 && job?.state !== 'done'; i++) {
        job = (await api.call('GET', `/v1/sends/${r.body.id}`)).body;
        if (job.state !== 'done') await new Promise((res) => setTimeout(res, 20));
      }
      assert.equal(job.state, 'done', JSON.stringify(job));
      assert.equal(job.result.streams[0].pace, 'pcr');
      assert.ok(Math.abs(job.result.streams[0].passMs - (ts.byteLength * 8000) / 2_000_000) < 0.01);
      await sink.waitFor(30);
      assert.ok(Buffer.concat(sink.received.map((d) => d.data)).equals(ts));
    } finally {
      await sink.close();
    }
  });

  test('a payload without PCR, or a bitrate stream without a bitrate: 400 with the reason', async () => {
    const noClock = await api.call('POST', '/v1/sends', { kind: 'stream', streams: [{ to: 'udp://127.0.0.1:9', pace: 'pcr', bytes: 1316 }] });
    assert.equal(noClock.status, 400, JSON.stringify(noClock.body));
    assert.match(JSON.stringify(noClock.body), /pace 'pcr'/);
    const noRate = await api.call('POST', '/v1/sends', { kind: 'stream', streams: [{ to: 'udp://127.0.0.1:9', bytes: 1316 }] });
    assert.equal(noRate.status, 400, JSON.stringify(noRate.body));
    assert.match(JSON.stringify(noRate.body), /streams\[0\]\.bitrate/);
  });
});
