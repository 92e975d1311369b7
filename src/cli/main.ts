/**
 * The `sluice` command line. Each subcommand validates its input through
 * the same policy schema as the library, and maps failures to documented
 * exit codes (see EXIT in output.ts).
 */
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError as CliArgError, Option, type OptionValues } from 'commander';
import { kernelHookOption, pinOption } from './kernel-options.js';
import { tcpPathOption } from './tcp-relay.js';
import { batchHoldOption, workersOption } from './batched-options.js';
import { MAX_CONFIG_BYTES, parseConfigText } from '../policy/config.js';
import { readInputText } from './input.js';
import { localHostAddresses } from '../control/host-addresses.js';
import { parseFlowPolicy } from '../policy/validate.js';
import { TIER_NAMES, type FlowPolicy, type TierChoice } from '../policy/schema.js';
import { MAX_UDP_PAYLOAD } from '../wire/udp.js';
import { PAYLOAD_FORMATS } from '../wire/payload-format.js';
import type { StreamPace } from '../sender/pace-types.js';
import { NotSupportedError, PolicyValidationError, SluiceError } from '../errors.js';
import { runTpo, runStatus } from './tpo.js';
import { EXIT, parseBitrate, parseDuration, exitAfterOutput } from './output.js';
import { runSession, type SessionOptions } from './session.js';
import { runDemo } from './demo.js';
import { runSendAggregate, runWrite } from './send.js';
import { serveCommand } from './serve.js';
import { clusterCommand } from './cluster.js';
import { fanoutCommand } from './fanout.js';
import { clientCommands, runDaemonStatus, tokenOption, urlOption } from './client.js';
import { existsSync } from 'node:fs';
import { DEFAULT_PIN_ROOT, detachPinned, pinDirFor } from '../dataplane/kernel/attach.js';
import { releasePinned } from '../dataplane/kernel/lo-settings.js';
import { restoreLeftoverTuning } from '../dataplane/kernel/host-tuning.js';
import { tuneHostOption } from './tune-host.js';
import { logLevelOption, type LogLevel } from './log-lines.js';
import { progressIntervalOption } from './progress.js';
import { multicastFields, multicastOption } from './multicast-flags.js';

const collect = (value: string, prev: string[]) => [...prev, value];
const tierOption = () => new Option('--tier <tier>', 'tier to run on').choices(['auto', ...TIER_NAMES]).default('auto');
/** A number in 0..max: a huge stats interval would overflow Node's timers and fire every millisecond. */
const nonNegative = (max: number) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > max) throw new CliArgError(`expected a number from 0 to ${max}`);
  return n;
};
const positiveInt = (max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new CliArgError(`expected an integer from 1 to ${max}`);
  return n;
};
/** Seconds: a day. */
const MAX_STATS_INTERVAL_S = 86_400;
// The options `relay` and `run` share: one definition each, so their help and limits cannot drift apart.
const statsIntervalOption = () =>
  new Option('--stats-interval <seconds>', 'print counters every N seconds (0: only at exit; at most 86400)').argParser(nonNegative(MAX_STATS_INTERVAL_S));
const jsonOption = () => new Option('--json', 'machine-readable JSON lines on stdout');
/** The flags `relay` and `run` share, as runSession takes them. */
const sessionFlags = (o: OptionValues): Omit<SessionOptions, 'tier' | 'flows'> => ({
  batchHoldMs: o.batchHold,
  workers: o.workers,
  pin: o.pin,
  tuneHost: o.tuneHost,
  kernelHook: o.kernelHook,
  json: !!o.json,
  statsInterval: o.statsInterval ?? (o.json ? 0 : 5),
  logLevel: o.logLevel as LogLevel | undefined,
});

/**
 * Reads and validates a config file: every check `run` makes before it
 * binds anything, across flows and against this host's addresses (relay
 * loops), so `validate` passes exactly the files `run` accepts.
 */
async function loadConfig(path: string) {
  return parseConfigText(readInputText(path, MAX_CONFIG_BYTES, 'invalid config'), path, localHostAddresses());
}

/** Builds the program; `exit` receives the exit code of the command that ran. */
export function buildProgram(exit: (code: number) => void): Command {
  const program = new Command('sluice')
    .description('Policy-driven packet delivery: redirect and replicate UDP flows in the fastest tier the host allows.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('relay')
    .description('relay datagrams from one listen address: one --to redirects, several replicate')
    .requiredOption('--listen <url>', 'listen address, udp://HOST:PORT (IPv6: udp://[ADDR]:PORT), or tcp://HOST:PORT for a tcp-redirect')
    .option('--to <url>', 'destination (repeat for a replicate)', collect, [])
    .option('--allow <cidr>', "allowed source address or prefix (repeatable), or 'any'", collect, [])
    .addOption(tierOption())
    .option('--name <name>', 'flow name in counters')
    .option('--max-connections <n>', 'tcp://: most joined connections at once, more are reset (default 1024)', positiveInt(65536))
    .addOption(tcpPathOption())
    .option('--max-datagram <bytes>', 'drop (and count) longer datagrams', positiveInt(MAX_UDP_PAYLOAD))
    .addOption(
      new Option('--payload <format>', 'payload check; mpegts, rtp and rtp-mpegts (TS in RTP) are also monitored (RTP loss and jitter, TR 101 290)')
        .choices([...PAYLOAD_FORMATS])
        .default('any'),
    )
    .option('--no-monitor', 'media payloads: check the format only, do not watch the stream')
    .option('--rtcp', "RTP payloads: relay RTCP on listen port+1 to each subscriber's port+1 (rtcp: 'port+1')")
    .option('--suspend-after-errors <n>', 'suspend a subscriber after N ICMP errors in a row (port/host unreachable); default: never', positiveInt(1_000_000))
    .option(
      '--suspend-retry <ms>',
      'first wait before a suspended subscriber is tried again (default 1000; doubles per failed retry, up to 60 s; 100 to 3600000)',
      positiveInt(3_600_000),
    )
    .addOption(multicastOption('source'))
    .addOption(multicastOption('interface'))
    .addOption(multicastOption('ttl'))
    .addOption(multicastOption('outInterface'))
    .addOption(multicastOption('loop'))
    .addOption(batchHoldOption())
    .addOption(workersOption())
    .addOption(pinOption())
    .addOption(tuneHostOption())
    .addOption(kernelHookOption())
    .addOption(statsIntervalOption())
    .addOption(logLevelOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      '\nExamples:\n  sluice relay --listen udp://0.0.0.0:5000 --to udp://127.0.0.1:6000 --allow 127.0.0.1\n  sluice relay --listen udp://[::]:5000 --to udp://[::1]:6000 --to udp://[::1]:6001 --allow ::1' +
        '\n  sluice relay --listen udp://232.1.1.1:5000 --source 10.0.0.1 --interface eth0 --allow any --to udp://10.0.1.2:6000' +
        '\n  sluice relay --listen udp://10.0.0.5:5000 --allow 10.0.0.1 --to udp://239.2.2.2:7000 --ttl 8 --out-interface eth1',
    )
    .action(async (o) => {
      if (o.to.length === 0) throw new PolicyValidationError([{ path: '--to', message: 'give at least one destination' }], 'sluice relay');
      if (/^tcp:\/\//i.test(o.listen)) return exit(await (await import('./tcp-relay.js')).runTcpRelay(o)); // a tcp-redirect (issue 22)
      if (o.allow.length === 0) {
        throw new PolicyValidationError(
          [{ path: '--allow', message: "required: the sources to relay (address or CIDR prefix), or 'any' to relay for everyone" }],
          'sluice relay',
        );
      }
      const policy: FlowPolicy = {
        type: o.to.length === 1 ? 'redirect' : 'replicate',
        listen: o.listen,
        to: o.to.length === 1 ? o.to[0] : o.to,
        allow: o.allow.length === 1 ? o.allow[0] : o.allow,
        payload: o.payload,
        ...(o.monitor === false ? { monitor: false } : {}),
        ...(o.rtcp ? { rtcp: 'port+1' } : {}),
        ...(o.name ? { name: o.name } : {}),
        ...(o.maxDatagram ? { maxDatagramSize: o.maxDatagram } : {}),
        ...(o.suspendAfterErrors ? { suspendAfterErrors: o.suspendAfterErrors } : {}),
        ...(o.suspendRetry ? { suspendRetryMs: o.suspendRetry } : {}),
        ...multicastFields(o),
      } as FlowPolicy;
      parseFlowPolicy(policy); // fail before opening anything
      exit(
        await runSession({
          tier: o.tier as TierChoice,
          flows: [policy],
          ...sessionFlags(o),
        }),
      );
    });

  program
    .command('run')
    .description('run every flow declared in a config file (YAML or JSON); SIGHUP re-reads it and applies the changes')
    .requiredOption('-c, --config <file>', 'config file, e.g. sluice.yaml')
    .addOption(new Option('--tier <tier>', "override the file's tier").choices(['auto', ...TIER_NAMES]))
    .addOption(batchHoldOption())
    .addOption(workersOption())
    .addOption(pinOption())
    .addOption(tuneHostOption())
    .addOption(kernelHookOption())
    .addOption(statsIntervalOption())
    .addOption(logLevelOption())
    .addOption(jsonOption())
    .action(async (o) => {
      const config = await loadConfig(o.config);
      const reload = async () => [...(await loadConfig(o.config)).flows];
      exit(
        await runSession({
          tier: (o.tier ?? config.tier) as TierChoice,
          flows: [...config.flows, ...config.tcp],
          reload,
          ...sessionFlags(o),
        }),
      );
    });

  program
    .command('send')
    .description('send an aggregate described in a JSON file: many messages, each to its own destination, on its schedule (see sluice send --help)')
    .requiredOption('--aggregate <file>', 'JSON aggregate (docs/POLICY.md); payloads as text, hex, base64 or file')
    .option('--allow-any-file', "let file payloads name any regular file (absolute paths, .., symbolic links out of the JSON file's folder)")
    .addOption(tierOption())
    .addOption(progressIntervalOption())
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      exit(
        await runSendAggregate({
          file: o.aggregate,
          tier: o.tier as TierChoice,
          json: !!o.json,
          allowAnyFile: !!o.allowAnyFile,
          progressIntervalS: o.progressInterval,
        }),
      );
    });

  program
    .command('write')
    .description('send a file to several destinations, cut into packets, destinations interleaved; with --bitrate or --pace, paced')
    .requiredOption('--file <path>', 'file to send')
    .requiredOption('--to <url>', 'destination (repeat for several)', collect, [])
    .option('--packet-size <bytes>', 'largest datagram payload (default 1472; 1316 with --pace pcr; 65507 with --pace rtp)', positiveInt(MAX_UDP_PAYLOAD))
    .option('--burst <n>', 'packets per destination before the next (1 = strict interleave)', positiveInt(64), 1)
    .option('--bitrate <rate>', 'pace: each destination gets the file as its own stream at this rate, bits/s (e.g. 4M, 800k, 2500000)', (v) => {
      const b = parseBitrate(v);
      if (b === undefined) throw new CliArgError('expected a bitrate in bits per second such as 4M, 2.5M, 800k or 2500000');
      return b;
    })
    .addOption(
      new Option(
        '--pace <clock>',
        "pace by the file's own clock: pcr (MPEG-TS PCRs), rtp (RTP timestamps; the file holds RTP packets each after a 16-bit length, RFC 4571), or bitrate (--bitrate)",
      ).choices(['pcr', 'rtp', 'bitrate']),
    )
    .option('--clock-rate <hz>', 'RTP clock rate with --pace rtp (default 90000)', positiveInt(10_000_000))
    .addOption(tierOption())
    .addOption(progressIntervalOption())
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nExamples:\n  sluice write --file f.bin --to udp://127.0.0.1:6000 --to udp://127.0.0.1:6001\n  sluice write --file movie.ts --pace pcr --to udp://198.51.100.7:5000 --to udp://198.51.100.8:5000\n  sluice write --file movie.ts --packet-size 1316 --bitrate 4M --to udp://198.51.100.7:5000',
    )
    .action(async (o) => {
      exit(
        await runWrite({
          file: o.file,
          to: o.to,
          packetSize: o.packetSize ?? (o.pace === 'pcr' ? 1316 : o.pace === 'rtp' ? MAX_UDP_PAYLOAD : 1472),
          burst: o.burst,
          bitrate: o.bitrate,
          pace: o.pace as StreamPace | undefined,
          clockRate: o.clockRate,
          tier: o.tier as TierChoice,
          json: !!o.json,
          progressIntervalS: o.progressInterval,
        }),
      );
    });

  program
    .command('tpo')
    .description('run a TPO gateway: carry chosen TCP/UDP flows to peer gateways over an encrypted, reliable, rate-controlled UDP link (docs/TPO.md)')
    .requiredOption('-c, --config <file>', 'gateway config, e.g. tpo.yaml (see examples/tpo-*.yaml)')
    .addOption(new Option('--io <kind>', 'peer-link I/O').choices(['auto', 'batched', 'portable']).default('auto'))
    .option('--stats-interval <seconds>', 'print status every N seconds (0: only at exit; at most 86400)', nonNegative(MAX_STATS_INTERVAL_S))
    .option('--json', 'machine-readable JSON lines on stdout')
    .addOption(logLevelOption())
    .addHelpText('after', '\nExamples:\n  sluice tpo --config examples/tpo-site-a.yaml\n  sluice status --name site-a')
    .action(async (o) => {
      exit(await runTpo({ config: o.config, json: !!o.json, statsInterval: o.statsInterval ?? 0, io: o.io, logLevel: o.logLevel as LogLevel | undefined }));
    });

  program
    .command('status')
    .description("show a running TPO gateway's peers, flows and counters (from its control socket); with --url, a running `sluice serve`")
    .option('--name <name>', 'the gateway name in its config (default tpo)')
    .option('--socket <path>', "control socket path (the config's control:, or /run/sluice/tpo-NAME.sock as root)")
    .addOption(urlOption())
    .addOption(tokenOption())
    .option('--json', 'machine-readable JSON')
    .action(async (o) => {
      if (o.url !== undefined || o.tokenFile !== undefined) {
        exit(await runDaemonStatus({ ...(o.url ? { url: o.url } : {}), ...(o.tokenFile ? { tokenFile: o.tokenFile } : {}), json: !!o.json }));
        return;
      }
      exit(await runStatus({ ...(o.socket ? { socket: o.socket } : {}), ...(o.name ? { name: o.name } : {}), json: !!o.json }));
    });

  // The daemon, its clients, the cluster and the live fan-out (serve.ts, client.ts, cluster.ts, fanout.ts).
  program.addCommand(serveCommand(exit));
  for (const c of [clusterCommand(exit), ...clientCommands(exit), fanoutCommand(exit)]) program.addCommand(c);

  program
    .command('detach')
    .description(
      "kernel tier: remove everything sluice pinned in this network namespace (programs, links, maps), and restore lo's settings if no kernel-tier process needs them",
    )
    .option('--pin-dir <dir>', 'bpffs directory given to --pin', DEFAULT_PIN_ROOT)
    .action(async (o) => {
      const dir = pinDirFor(o.pinDir);
      const removed = existsSync(dir) ? detachPinned(dir) : [];
      process.stdout.write(removed.length ? `detached: removed ${removed.length} pinned object(s) from ${dir}\n` : `nothing pinned in ${dir}\n`);
      // lo's settings go back once no kernel-tier process and no pinned state needs them (also after a crash).
      const restored = releasePinned(dir);
      if (restored.length) process.stdout.write(`restored on lo: ${restored.join(', ')}\n`);
      const untuned = restoreLeftoverTuning(); // a crashed --tune-host's backlog setting
      if (untuned) process.stdout.write(`--tune-host left by a process that did not stop: ${untuned}\n`);
      exit(EXIT.OK);
    });

  program
    .command('validate')
    .description('check a config file and print the flows it declares')
    .requiredOption('-c, --config <file>', 'config file')
    .action(async (o) => {
      const config = await loadConfig(o.config);
      process.stdout.write(`${o.config}: ok, ${config.flows.length + config.tcp.length} flow(s), tier ${config.tier}\n`);
      exit(EXIT.OK);
    });

  program
    .command('doctor')
    .description('show which tiers (and tcp-redirect paths) this host supports, and why one is unavailable')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      await (await import('./doctor.js')).runDoctor(o);
      exit(EXIT.OK);
    });

  program
    .command('demo')
    .description('origin → relay → N subscribers: a real H.264/AAC MPEG-TS clip paced by its PCRs (or, with --bitrate, a synthetic stream), checked for loss')
    .option('--subscribers <n>', 'subscribers per tier', positiveInt(4096), 8)
    .option('--bitrate <rate>', 'instead of the clip, a synthetic stream at this bitrate, e.g. 20M, 500k (a load test)', (v) => {
      const b = parseBitrate(v);
      if (b === undefined) throw new CliArgError('expected a bitrate such as 20M, 2.5M or 800k');
      return b;
    })
    .option('--watch <url>', 'also send the stream to this destination for a player, e.g. udp://127.0.0.1:5000, then: ffplay udp://127.0.0.1:5000')
    .option(
      '--duration <time>',
      'how long to stream, e.g. 10s, 500ms, 2m',
      (v) => {
        const d = parseDuration(v);
        if (d === undefined) throw new CliArgError('expected a duration such as 10, 10s, 500ms or 2m');
        return d;
      },
      10_000,
    )
    .option('--tier <tiers>', 'tier(s) to relay through: auto, all, or a comma list (e.g. portable,batched)', 'auto')
    .option('--json', 'machine-readable JSON lines on stdout')
    .action(async (o) => {
      exit(await runDemo({ subscribers: o.subscribers, bitrateBps: o.bitrate, watch: o.watch, durationMs: o.duration, tiers: o.tier, json: !!o.json }));
    });

  return program;
}

/** Runs the CLI; resolves with the process exit code. */
export async function main(argv: readonly string[] = process.argv): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync([...argv]);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successful exits; everything else is usage.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? EXIT.OK : EXIT.USAGE;
    }
    if (err instanceof PolicyValidationError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      return EXIT.USAGE;
    }
    if (err instanceof NotSupportedError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      return EXIT.UNAVAILABLE;
    }
    if (err instanceof SluiceError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      return EXIT.FAILURE;
    }
    process.stderr.write(`sluice: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT.FAILURE;
  }
}

export { exitAfterOutput };

// Run when executed directly (tsx src/cli/main.ts, or node dist/cli/main.js).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main().then(exitAfterOutput);
}
