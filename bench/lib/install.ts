/**
 * Installs the Debian packages the bench needs and that are missing: the
 * comparison peers (socat, nginx with the stream module, GStreamer).
 * `apt-get update` runs only if an install fails.
 *
 * Package scripts must not start services (nginx's would listen on port 80
 * in the root namespace): if the host has no /usr/sbin/policy-rc.d, one that
 * forbids starting services is written for the install and removed after.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';

export interface Requirement {
  /** What needs it, for messages. */
  what: string;
  /** True when it is already usable. */
  present: () => boolean;
  packages: readonly string[];
}

const POLICY_RC_D = '/usr/sbin/policy-rc.d';

export function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** True when `cmd args` exits 0. */
export function succeeds(cmd: string, args: readonly string[]): boolean {
  return spawnSync(cmd, [...args], { stdio: 'ignore', timeout: 30_000 }).status === 0;
}

function aptGet(args: readonly string[]): { ok: boolean; output: string } {
  const r = spawnSync('apt-get', [...args], {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeout: 600_000,
  });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** Install what is missing. Returns the requirements still missing afterwards (with a reason). */
export function ensureInstalled(reqs: readonly Requirement[], log: (msg: string) => void): Map<string, string> {
  const missing = reqs.filter((r) => !r.present());
  const failed = new Map<string, string>();
  if (missing.length === 0) return failed;
  const packages = [...new Set(missing.flatMap((r) => r.packages))];
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    for (const r of missing) failed.set(r.what, `not installed (${r.packages.join(' ')}); run as root to install`);
    return failed;
  }
  log(`installing Debian packages: ${packages.join(' ')}`);
  const wrotePolicy = !existsSync(POLICY_RC_D);
  try {
    if (wrotePolicy) writeFileSync(POLICY_RC_D, '#!/bin/sh\n# written by sluice bench for one apt-get install\nexit 101\n', { mode: 0o755 });
    let r = aptGet(['install', '-y', '-qq', '--no-install-recommends', ...packages]);
    if (!r.ok) {
      log('apt-get install failed; running apt-get update and retrying');
      aptGet(['update', '-qq']);
      r = aptGet(['install', '-y', '-qq', '--no-install-recommends', ...packages]);
    }
    if (!r.ok) log(`apt-get install failed:\n${r.output.trim().split('\n').slice(-8).join('\n')}`);
  } finally {
    if (wrotePolicy) {
      try {
        unlinkSync(POLICY_RC_D);
      } catch {
        /* already gone */
      }
    }
  }
  for (const r of missing) if (!r.present()) failed.set(r.what, `could not install ${r.packages.join(' ')}`);
  return failed;
}

/** First line of a command's output (stdout or stderr), or 'unknown'. */
export function versionOf(cmd: string, args: readonly string[], lineMatch?: RegExp): string {
  try {
    const r = spawnSync(cmd, [...args], { encoding: 'utf8', timeout: 10_000 });
    const lines = `${r.stdout ?? ''}\n${r.stderr ?? ''}`
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    return (lineMatch ? lines.find((l) => lineMatch.test(l)) : lines[0]) ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Installed version of a Debian package, or undefined. */
export function debVersion(pkg: string): string | undefined {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined;
  } catch {
    return undefined;
  }
}
