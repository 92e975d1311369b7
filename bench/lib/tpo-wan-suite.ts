/**
 * The tpo-wan suite (issues #7 and #18): TCP from a client to a server
 * across each profile's path (tpo-wan-profiles.ts: an emulated WAN of
 * 50 Mbit/s, 100 ms RTT at 0, 1, 3 % random loss both ways; one of
 * 200 Mbit/s, 10 ms RTT; loopback, no emulator), for every way of crossing
 * it (tpo-wan-paths.ts), all in the same run:
 *
 *   direct-cubic    client → server TCP, forwarded by gwa and gwb, CUBIC
 *   direct-bbr      the same with BBR (this kernel's default, set explicitly)
 *   kcptun-fast3    kcptun client on gwa, server on gwb, `--mode fast3
 *                   --sndwnd 2048 --rcvwnd 2048` (its fastest profile, large
 *                   windows); the TCP legs on each site use CUBIC
 *   kcptun-default  kcptun with its defaults (mode fast, windows 128/512,
 *                   FEC 10+3, aes, compression)
 *   sluice-cubic    through Sluice gateways on gwa/gwb with CUBIC endpoints:
 *                   see startSluiceGateways() in tpo-wan-paths.ts. The
 *                   gateways start with the trial: the transfer pays for
 *                   the session's startup from nothing known.
 *   sluice-cubic-established
 *                   the same, on a session that already carried a
 *                   transfer (WARMUP_S of bulk, then 1 s idle), as
 *                   gateways that run for days carry most flows: the
 *                   session's path estimate is there when the flow
 *                   starts. The warm-up's connection, bytes and drops are
 *                   not counted (emulator counters are read before and
 *                   after the measured transfer).
 *
 * Per trial (tpo-wan-trial.ts): a bulk transfer of incompressible data
 * (emulated WAN: for the profile's seconds, bounded in bytes too, through a
 * fresh emulator whose counters are the trial's; loopback: a fixed size),
 * and at the same time 100-byte request / 100-byte response exchanges on a
 * second connection over the same path (latency under load), and the CPU
 * the tunnel's processes and the endpoints used. Goodput is what the server
 * received in the window; wire bytes are the IP bytes that entered the WAN
 * (emulator counters), per delivered byte.
 *
 * The congestion control is set on the client's sockets (TCP_CONGESTION,
 * right after connect, before any data) and the algorithm the kernel
 * reports for the bulk connection is recorded in every row. A namespace's
 * default (net.ipv4.tcp_congestion_control) cannot be used for CUBIC here:
 * outside the root namespace the kernel only accepts algorithms listed in
 * the global tcp_allowed_congestion_control (here "reno bbr"), and changing
 * that global list is not this bench's business. So the legs a tunnel opens
 * itself (kcptun-server → server on gwb) use the namespace default, BBR;
 * they are LAN legs without delay or loss, where the algorithm hardly
 * matters, and only carry data the WAN leg already delivered.
 *
 * Topology: harness/wan/topology.ts for the emulated profiles (its own five
 * namespaces), one namespace of its own for loopback; both removed on exit,
 * signals and errors.
 */
import { spawnSync } from 'node:child_process';
import { createTopology, type Topology } from '../../harness/netns/netns.js';
import { createWanTopology, type WanTopology } from '../../harness/wan/topology.js';
import { commandExists, debVersion, ensureInstalled } from './install.js';
import { TPO_WAN_VARIANTS, loopbackPlace, wanPlace, type Place, type TpoWanVariant } from './tpo-wan-paths.js';
import { lossesOf, pickProfiles, type TpoWanProfile } from './tpo-wan-profiles.js';
import { runTrial, type TpoWanTrial } from './tpo-wan-trial.js';

export { TPO_WAN_VARIANTS, type TpoWanVariant } from './tpo-wan-paths.js';
export type { TpoWanTrial } from './tpo-wan-trial.js';

export interface TpoWanResults {
  trials: TpoWanTrial[];
  /** The profiles run, as run (after --wan-seconds). */
  profiles: TpoWanProfile[];
  quick: boolean;
  versions: Record<string, string>;
}

export interface TpoWanOptions {
  repeats: number;
  quick: boolean;
  profiles: readonly TpoWanProfile[];
  variants?: readonly TpoWanVariant[];
  /** apt-get install kcptun if it is missing (a failed install is not fatal: its rows say unavailable). */
  install?: boolean;
  log: (msg: string) => void;
  /** Called after every trial (e.g. to save partial results). */
  onTrial?: (t: TpoWanTrial) => void;
}

/** The profiles with the emulated ones' transfer time set to `seconds` (--wan-seconds), if given. */
function withSeconds(profiles: readonly TpoWanProfile[], seconds: number | undefined): TpoWanProfile[] {
  return profiles.map((p) => (p.kind === 'wan' && seconds ? { ...p, seconds, quickSeconds: seconds, steadyFromS: Math.min(p.steadyFromS, seconds / 2) } : p));
}

/**
 * The suite's plan from the bench's options (--profiles, --wan-seconds,
 * --wan-variants, --quick) and the results to fill, or what is wrong with
 * them. Quick leaves out kcptun's defaults (far behind its fast3 profile)
 * to keep a quick run within about 7 minutes.
 */
export function planTpoWan(o: {
  profiles?: string;
  wanSeconds?: number;
  wanVariants?: string;
  quick: boolean;
}): { profiles: TpoWanProfile[]; variants: TpoWanVariant[]; quick: boolean; results: TpoWanResults } | { error: string } {
  let profiles: TpoWanProfile[];
  try {
    profiles = withSeconds(pickProfiles(o.profiles), o.wanSeconds);
  } catch (err) {
    return { error: (err as Error).message };
  }
  const names = o.wanVariants ? o.wanVariants.split(',').map((x) => x.trim()) : TPO_WAN_VARIANTS.filter((v) => !o.quick || v !== 'kcptun-default');
  const bad = names.filter((v) => !(TPO_WAN_VARIANTS as readonly string[]).includes(v));
  if (bad.length) return { error: `unknown tpo-wan variant(s) ${bad.join(', ')} (have ${TPO_WAN_VARIANTS.join(', ')})` };
  return { profiles, variants: names as TpoWanVariant[], quick: o.quick, results: { trials: [], profiles, quick: o.quick, versions: {} } };
}

export function tpoWanVersions(): Record<string, string> {
  const kernelCc = (() => {
    try {
      return spawnSync('sysctl', ['-n', 'net.ipv4.tcp_available_congestion_control'], { encoding: 'utf8' }).stdout.trim();
    } catch {
      return 'unknown';
    }
  })();
  return { kcptun: debVersion('kcptun') ?? 'not installed', tcpAvailableCongestionControl: kernelCc };
}

function describe(t: TpoWanTrial): string {
  const e = t.emulator;
  const c = t.cpu;
  const gb = (t.deliveredBytes ?? 0) / 1e9;
  return (
    `${t.goodputMbit!.toFixed(2)} Mbit/s` +
    (t.steadyMbit !== undefined ? ` (${t.steadyMbit.toFixed(2)} steady)` : '') +
    (t.seconds !== undefined ? ` (${((t.deliveredBytes ?? 0) / 1e6).toFixed(0)} MB in ${t.seconds.toFixed(2)} s${t.completed ? '' : ', INCOMPLETE'})` : '') +
    `, rr p50 ${t.rr?.p50.toFixed(1) ?? '–'} / p99 ${t.rr?.p99.toFixed(1) ?? '–'} ms` +
    (c ? `, CPU s/GB tunnel ${c.tunnelS !== undefined ? (c.tunnelS / gb).toFixed(1) : '–'} endpoints ${(c.endpointsS / gb).toFixed(1)}` : '') +
    (c?.busiest ? ` (busiest ${c.busiest.thread} ${(c.busiest.share * 100).toFixed(0)} %)` : '') +
    (t.wirePerDelivered !== undefined ? `, wire ${t.wirePerDelivered.toFixed(3)}x` : '') +
    (e ? `; emulator: ${e.dropLoss} lost, ${e.dropQueue} queue drops, ${(e.lateOver1ms * 100).toFixed(2)} % released > 1 ms late` : '')
  );
}

/** Runs every (repeat, profile, loss, variant) trial; variants interleaved within a repeat so drift hits all alike. */
export async function runTpoWanSuite(o: TpoWanOptions, into: TpoWanResults): Promise<void> {
  const variants = o.variants ?? TPO_WAN_VARIANTS;
  if (o.install) ensureInstalled([{ what: 'kcptun', present: () => commandExists('kcptun-client'), packages: ['kcptun'] }], o.log);
  into.versions = tpoWanVersions();
  o.log(`tpo-wan: ${variants.join(', ')} across ${o.profiles.map((p) => p.id).join(', ')}, ${o.repeats} repeat(s)`);
  const skipped = new Map<TpoWanVariant, string>();
  let wt: WanTopology | undefined;
  let loop: Topology | undefined;
  try {
    if (o.profiles.some((p) => p.kind === 'wan')) wt = await createWanTopology();
    if (o.profiles.some((p) => p.kind === 'loopback')) loop = await createTopology({ namespaces: ['loop'] });
    const placeOf = (p: TpoWanProfile): Place => (p.kind === 'wan' ? wanPlace(wt!) : loopbackPlace(loop!, 'loop'));
    for (let repeat = 1; repeat <= o.repeats; repeat++) {
      for (const profile of o.profiles) {
        for (const loss of lossesOf(profile, o.quick)) {
          for (const variant of variants) {
            const base = { profile: profile.id, repeat, loss, variant };
            const known = skipped.get(variant);
            if (known) {
              into.trials.push({ ...base, unavailable: known });
              continue;
            }
            let t: TpoWanTrial;
            try {
              const seed = 1000 * repeat + Math.round(loss * 100);
              t = await runTrial({ profile, ...(wt ? { wt } : {}), place: placeOf(profile), repeat, loss, variant, quick: o.quick, seed });
            } catch (err) {
              t = { ...base, error: (err as Error).message.slice(0, 2000) };
            }
            into.trials.push(t);
            o.onTrial?.(t);
            const where = `tpo-wan ${profile.id}${profile.kind === 'wan' ? ` at ${loss * 100} % loss` : ''}, ${variant}`;
            if (t.unavailable) {
              skipped.set(variant, t.unavailable);
              o.log(`  ${where}: unavailable (${t.unavailable})`);
            } else if (t.error) {
              o.log(`  ${where}: ERROR ${t.error.split('\n')[0]}`);
            } else {
              o.log(`  ${where} (${t.cc}): ${describe(t)}`);
            }
          }
        }
      }
    }
  } finally {
    await wt?.destroy();
    await loop?.destroy();
  }
}
