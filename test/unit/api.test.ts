import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Sluice, probeTiers, type AggregatePolicy, NotSupportedError, InvalidArgumentError, PolicyValidationError, ConflictError } from '../../src/index.js';
import { openReceiver } from '../../harness/traffic/udp.js';

describe('library API (portable tier)', () => {
  test('auto picks an available tier; an unavailable explicit tier says why', async () => {
    const s = await Sluice.open();
    assert.equal(s.tier, (await probeTiers()).find((p) => p.available)!.tier);
    await s.close();
    for (const p of (await probeTiers()).filter((x) => !x.available)) {
      await assert.rejects(Sluice.open({ tier: p.tier }), (e: unknown) => e instanceof NotSupportedError && e.reason === p.detail);
    }
  });

  test('aggregate and segment policies are validated but not applied as flows', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    const aggregate: AggregatePolicy = {
      type: 'aggregate',
      messages: [{ to: 'udp://127.0.0.1:9', data: new Uint8Array(4) }],
      schedule: { kind: 'delays', delaysMs: [0] },
    };
    // apply() takes flow policies only: a type error in TypeScript, refused at run time for JavaScript callers.
    // @ts-expect-error an aggregate is not a FlowPolicy
    await assert.rejects(s.apply(aggregate), NotSupportedError);
    // @ts-expect-error an aggregate is not a FlowPolicy
    await assert.rejects(s.apply({ ...aggregate, schedule: { kind: 'delays', delaysMs: [0, 1] } }), PolicyValidationError);
    await s.close();
  });

  test('update validates the merged policy; type, name and listen are fixed', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    const dst = await openReceiver();
    const f = await s.apply({ name: 'r', type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
    await assert.rejects(f.update({ to: 'udp://127.0.0.1:0' }), (e: unknown) => e instanceof PolicyValidationError && e.issues[0]!.path === 'to');
    await assert.rejects(f.update({ listen: 'udp://127.0.0.1:1' }), (e: unknown) => e instanceof PolicyValidationError && e.issues[0]!.path === 'listen');
    await assert.rejects(f.update({ name: 'other' }), (e: unknown) => e instanceof PolicyValidationError && e.issues[0]!.path === 'name');
    await assert.rejects(f.addSubscriber(dst.url), InvalidArgumentError);
    // A rejected update leaves the running policy untouched.
    assert.equal(f.stats().destinations[0]!.to, dst.url);
    await assert.rejects(s.apply({ name: 'r', type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' }), ConflictError);
    await s.close();
    await dst.close();
  });

  test('concurrent subscriber changes all take effect, in call order', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    const f = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [], allow: 'any' });
    const urls = Array.from({ length: 20 }, (_, i) => `udp://127.0.0.1:${20000 + i}`);
    await Promise.all([...urls.map((u) => f.addSubscriber(u)), f.removeSubscriber(urls[3]!), f.addSubscriber(urls[0]!)]);
    assert.deepEqual(
      f.stats().destinations.map((d) => d.to),
      urls.filter((_, i) => i !== 3),
    );
    assert.equal(f.spec.type, 'replicate');
    await s.close();
  });
});
