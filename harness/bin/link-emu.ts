/**
 * The link emulator (harness/wan/udp-emulator.ts) as a process of its own, so
 * a bench can keep its CPU apart from what it measures.
 *
 *   --config JSON   LinkEmulatorOptions (seed, peerA, peerB, aToB, bToA, ...)
 *
 * stdout, first: {"event":"ready","a":{address,port},"b":{address,port}}
 * stdin: "stats" -> {"aToB":{...},"bToA":{...}}; end of input -> close, exit 0.
 */
import { createInterface } from 'node:readline';
import { LinkEmulator, type LinkEmulatorOptions } from '../wan/udp-emulator.js';
import { flag } from '../../bench/tools/load-common.js';

const emu = await LinkEmulator.create(JSON.parse(flag('config')) as LinkEmulatorOptions);
process.stdout.write(`${JSON.stringify({ event: 'ready', a: emu.a, b: emu.b })}\n`);
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line.trim() === 'stats') process.stdout.write(`${JSON.stringify({ aToB: emu.stats('aToB'), bToA: emu.stats('bToA') })}\n`);
});
rl.on('close', () => {
  void emu.close().then(() => process.exit(0));
});
