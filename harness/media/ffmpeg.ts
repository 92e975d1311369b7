/**
 * ffmpeg and ffprobe as test and bench clients (Debian package ffmpeg,
 * installed by .ci/run): whether they are here, small MPEG-TS files made
 * on the spot, and what ffprobe reads in a capture.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Why ffmpeg-based tests cannot run here (undefined: they can). */
export function ffmpegSkipReason(): string | undefined {
  for (const tool of ['ffmpeg', 'ffprobe']) {
    const r = spawnSync(tool, ['-version'], { stdio: 'ignore' });
    if (r.error || r.status !== 0) return `${tool} is not installed (Debian package ffmpeg; .ci/run installs it)`;
  }
  return undefined;
}

/**
 * A VBR MPEG-TS file: `highS` seconds of noise (about 10 Mbit/s of H.264
 * at 320x240) then `lowS` seconds of a still-ish test pattern (about
 * 0.6 Mbit/s), no mux rate (so no null-packet padding: the TS rate follows
 * the content), PCR on the video PID.
 */
export async function makeVbrTs(path: string, highS: number, lowS: number): Promise<void> {
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-y'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=320x240:rate=25:duration=${highS},noise=alls=60:allf=t+u`],
    ...['-f', 'lavfi', '-i', `testsrc2=size=320x240:rate=25:duration=${lowS}`],
    ...['-filter_complex', '[0:v][1:v]concat=n=2:v=1[v]', '-map', '[v]'],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '24', '-g', '25', '-f', 'mpegts', path],
  ]);
}

/** A CBR MPEG-TS file of `seconds` at `muxrate` bits/s (null packets fill the rate). */
export async function makeCbrTs(path: string, seconds: number, muxrate = 2_000_000): Promise<void> {
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-y'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=320x240:rate=25:duration=${seconds}`],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', String(Math.round(muxrate * 0.6)), '-maxrate', String(Math.round(muxrate * 0.6))],
    ...['-bufsize', String(muxrate), '-g', '25', '-muxrate', String(muxrate), '-f', 'mpegts', path],
  ]);
}

/**
 * The codec names of a media file's streams whose codec parameters
 * ffprobe found (a picture size for video, a sample rate for audio),
 * sorted and each once, e.g. ['aac', 'h264'].
 */
export async function probeCodecs(path: string): Promise<string[]> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,codec_type,width,sample_rate', '-of', 'json', path]);
  const streams = (JSON.parse(stdout) as { streams?: { codec_name?: string; codec_type?: string; width?: number; sample_rate?: string }[] }).streams ?? [];
  const known = streams.filter(
    (s) => s.codec_name && ((s.codec_type === 'video' && (s.width ?? 0) > 0) || (s.codec_type === 'audio' && Number(s.sample_rate) > 0)),
  );
  return [...new Set(known.map((s) => s.codec_name!))].sort();
}
