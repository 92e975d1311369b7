/**
 * The bench's exact core clock (bench/lib/irq-clock.ts): the programs load
 * and attach, a busy task on the core counts once it leaves, and idle time
 * does not. (Its softirq half is exercised by the bench itself, where the
 * kernel tier's cost appears only through it.) Root only; no interfaces
 * are touched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rootSkipReason } from '../helpers/netns.js';
import { CoreClock } from '../../bench/lib/irq-clock.js';
import { possibleCpus } from '../../src/sys/bpf.js';

const skip = rootSkipReason() ?? (possibleCpus() < 2 ? 'needs 2 CPUs' : undefined);

function spinOn(cpu: number, ms: number): Promise<void> {
  const p = spawn('taskset', ['-c', String(cpu), process.execPath, '-e', `const t = Date.now(); while (Date.now() - t < ${ms}) {}`], { stdio: 'ignore' });
  return new Promise((resolve, reject) => {
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`spinner exited ${code}`))));
    p.on('error', reject);
  });
}

test('counts a busy task on the core, not idle time', { skip }, async () => {
  const clock = CoreClock.open();
  try {
    const a = clock.busyS(0);
    const t0 = performance.now();
    await spinOn(0, 400);
    await new Promise((r) => setTimeout(r, 600)); // idle afterwards: must not count
    const b = clock.busyS(0);
    const elapsed = (performance.now() - t0) / 1000;
    const busy = b.busyS - a.busyS;
    assert.ok(busy >= 0.38, `busy ${busy.toFixed(3)} s < the 0.4 s spin`);
    assert.ok(busy < 0.4 + 0.35, `busy ${busy.toFixed(3)} s: idle time counted (elapsed ${elapsed.toFixed(3)} s)`);
  } finally {
    clock.close();
  }
});

test('counts NET_RX softirq time: loopback receive runs on the sending core', { skip }, async () => {
  const clock = CoreClock.open();
  try {
    const a = clock.busyS(0);
    // 20,000 datagrams to a closed loopback port, sent from CPU 0: their receive path is NET_RX work there.
    const script = `const s=require('node:dgram').createSocket('udp4');let n=0;const b=Buffer.alloc(100);const go=()=>{for(let i=0;i<1000;i++)s.send(b,9,'127.0.0.1');if((n+=1000)<20000)setImmediate(go);else setTimeout(()=>s.close(),50)};go();`;
    await new Promise<void>((resolve, reject) => {
      const p = spawn('taskset', ['-c', '0', process.execPath, '-e', script], { stdio: 'ignore' });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sender exited ${code}`))));
      p.on('error', reject);
    });
    const b = clock.busyS(0);
    const netRx = b.netRxS - a.netRxS;
    const busy = b.busyS - a.busyS;
    assert.ok(netRx > 0.001, `NET_RX ${netRx.toFixed(4)} s for 20,000 loopback datagrams`);
    assert.ok(netRx < busy, `NET_RX ${netRx.toFixed(4)} s is part of busy ${busy.toFixed(4)} s`);
  } finally {
    clock.close();
  }
});
