/** The machine a bench ran on, for the header of every result file. */
import { readFileSync } from 'node:fs';
import { cpus, hostname, release, totalmem } from 'node:os';

export function machineInfo(): Record<string, unknown> {
  let os = 'linux';
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {
    /* keep the default */
  }
  return {
    cpuModel: /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown',
    cores: cpus().length,
    kernel: release(),
    os,
    node: process.version,
    memGiB: Math.round(totalmem() / 2 ** 30),
    hostname: hostname(),
  };
}
