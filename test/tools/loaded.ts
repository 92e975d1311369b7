/**
 * Runs a command (default: `npm test`) while every core is kept busy, to
 * prove that the tests assert behaviour, not speed: the CI machine has 2
 * cores and may be loaded.
 *
 *   npm run test:loaded [-- [--busy N] [--max-minutes M] [-- command args...]]
 *
 * Starts N busy-looping node processes (default: 2 per core), runs the
 * command with inherited stdio, stops them when it ends, prints the load
 * average seen meanwhile, and exits with the command's code. Bounded: each
 * spinner exits by itself after --max-minutes (default 90) and when this
 * process goes away (its stdin pipe closes), so none outlives the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';

const argv = process.argv.slice(2);
const split = argv.indexOf('--');
const { values } = parseArgs({
  args: split < 0 ? argv : argv.slice(0, split),
  options: { busy: { type: 'string' }, 'max-minutes': { type: 'string' } },
});
const command = split < 0 || split === argv.length - 1 ? ['npm', 'test'] : argv.slice(split + 1);
const cores = availableParallelism();
const busy = values.busy !== undefined ? Number(values.busy) : 2 * cores;
const maxMinutes = values['max-minutes'] !== undefined ? Number(values['max-minutes']) : 90;
if (!Number.isInteger(busy) || busy < 0 || busy > 64) throw new Error(`--busy must be an integer 0..64 (got ${values.busy})`);
if (!(maxMinutes > 0 && maxMinutes <= 24 * 60)) throw new Error(`--max-minutes must be in (0, 1440] (got ${values['max-minutes']})`);

// Spins in 50 ms slices so the event loop can notice the parent's pipe closing.
const SPINNER = `
const end = Date.now() + ${Math.round(maxMinutes * 60_000)};
process.stdin.on('close', () => process.exit(0));
process.stdin.on('data', () => {});
const spin = () => { const t = Date.now() + 50; while (Date.now() < t) {} if (Date.now() < end) setImmediate(spin); else process.exit(0); };
spin();
`;

const spinners: ChildProcess[] = [];
function stopSpinners(): void {
  for (const s of spinners) {
    s.stdin?.destroy();
    s.kill('SIGKILL');
  }
}
for (let i = 0; i < busy; i++) spinners.push(spawn(process.execPath, ['-e', SPINNER], { stdio: ['pipe', 'ignore', 'inherit'] }));

const samples: number[] = [];
const sampler = setInterval(() => samples.push(loadavg()[0]!), 5_000);
const started = Date.now();
process.stderr.write(`# test:loaded: ${busy} busy processes on ${cores} cores (each stops within ${maxMinutes} min); running: ${command.join(' ')}\n`);

const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    child.kill(sig);
    stopSpinners();
  });
}
child.on('exit', (code, signal) => {
  clearInterval(sampler);
  stopSpinners();
  const mins = ((Date.now() - started) / 60_000).toFixed(1);
  const la = samples.length
    ? `load average (1 min) ${Math.min(...samples).toFixed(1)}–${Math.max(...samples).toFixed(1)}, mean ${(samples.reduce((a, b) => a + b, 0) / samples.length).toFixed(1)}`
    : 'no load sample';
  process.stderr.write(
    `# test:loaded: ${command.join(' ')} ended (${signal ?? `exit ${code}`}) after ${mins} min with ${busy} busy processes on ${cores} cores; ${la}\n`,
  );
  process.exit(code ?? 1);
});
