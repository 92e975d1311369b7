/**
 * RTP and RTCP packet builders for tests (RFC 3550 §5.1, §6.4–6.6): the
 * parsers in src/wire are checked against these, and monitor tests generate
 * streams with them. Builders trust their arguments (test code).
 */

export interface RtpSpec {
  readonly seq: number;
  readonly timestamp: number;
  readonly ssrc: number;
  readonly payloadType?: number;
  readonly marker?: boolean;
  readonly csrcs?: readonly number[];
  /** Header extension: profile field and data (a multiple of 4 bytes). */
  readonly extension?: { readonly profile: number; readonly data: Uint8Array };
  readonly payload?: Uint8Array;
  /** Padding bytes to append (1–255, the last one holding the count). */
  readonly padding?: number;
}

export function buildRtp(spec: RtpSpec): Uint8Array {
  const csrcs = spec.csrcs ?? [];
  const ext = spec.extension;
  const payload = spec.payload ?? new Uint8Array(0);
  const pad = spec.padding ?? 0;
  const size = 12 + 4 * csrcs.length + (ext ? 4 + ext.data.length : 0) + payload.length + pad;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  out[0] = 0x80 | (pad > 0 ? 0x20 : 0) | (ext ? 0x10 : 0) | csrcs.length;
  out[1] = (spec.marker ? 0x80 : 0) | ((spec.payloadType ?? 33) & 0x7f);
  v.setUint16(2, spec.seq & 0xffff);
  v.setUint32(4, spec.timestamp >>> 0);
  v.setUint32(8, spec.ssrc >>> 0);
  let at = 12;
  for (const c of csrcs) {
    v.setUint32(at, c >>> 0);
    at += 4;
  }
  if (ext) {
    v.setUint16(at, ext.profile);
    v.setUint16(at + 2, ext.data.length / 4);
    out.set(ext.data, at + 4);
    at += 4 + ext.data.length;
  }
  out.set(payload, at);
  if (pad > 0) out[size - 1] = pad;
  return out;
}

export interface ReportBlockSpec {
  readonly ssrc: number;
  readonly fractionLost: number;
  readonly cumulativeLost: number;
  readonly highestSeq: number;
  readonly jitter: number;
  readonly lsr: number;
  readonly dlsr: number;
}

export interface SenderInfoSpec {
  readonly ntpSeconds: number;
  readonly ntpFraction: number;
  readonly rtpTimestamp: number;
  readonly packetCount: number;
  readonly octetCount: number;
}

/** One RTCP packet: header (V=2, count, type, length) and a body padded to 32 bits. */
export function rtcpPacket(type: number, count: number, body: Uint8Array, padding = 0): Uint8Array {
  const bodyLen = (body.length + 3) & ~3;
  const size = 4 + bodyLen + padding;
  const out = new Uint8Array(size);
  out[0] = 0x80 | (padding > 0 ? 0x20 : 0) | (count & 0x1f);
  out[1] = type;
  new DataView(out.buffer).setUint16(2, size / 4 - 1);
  out.set(body, 4);
  if (padding > 0) out[size - 1] = padding;
  return out;
}

function words(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  const v = new DataView(out.buffer);
  values.forEach((x, i) => v.setUint32(4 * i, x >>> 0));
  return out;
}

function blocks(reports: readonly ReportBlockSpec[]): number[] {
  return reports.flatMap((r) => [r.ssrc, ((r.fractionLost & 0xff) << 24) | (r.cumulativeLost & 0xffffff), r.highestSeq, r.jitter, r.lsr, r.dlsr]);
}

export function buildRtcpSr(ssrc: number, info: SenderInfoSpec, reports: readonly ReportBlockSpec[] = [], padding = 0): Uint8Array {
  const body = words([ssrc, info.ntpSeconds, info.ntpFraction, info.rtpTimestamp, info.packetCount, info.octetCount, ...blocks(reports)]);
  return rtcpPacket(200, reports.length, body, padding);
}

export function buildRtcpRr(ssrc: number, reports: readonly ReportBlockSpec[] = [], padding = 0): Uint8Array {
  return rtcpPacket(201, reports.length, words([ssrc, ...blocks(reports)]), padding);
}

/** SDES with one chunk per source; items are [type, text]. */
export function buildRtcpSdes(chunks: readonly { ssrc: number; items: readonly (readonly [number, string])[] }[]): Uint8Array {
  const parts: number[] = [];
  for (const c of chunks) {
    const start = parts.length;
    parts.push(...words([c.ssrc]));
    for (const [type, text] of c.items) {
      const bytes = new TextEncoder().encode(text);
      parts.push(type, bytes.length, ...bytes);
    }
    parts.push(0); // END
    while ((parts.length - start) % 4 !== 0) parts.push(0);
  }
  return rtcpPacket(202, chunks.length, Uint8Array.from(parts));
}

export function buildRtcpBye(ssrcs: readonly number[], reason?: string): Uint8Array {
  const tail = reason === undefined ? [] : [new TextEncoder().encode(reason).length, ...new TextEncoder().encode(reason)];
  return rtcpPacket(203, ssrcs.length, Uint8Array.from([...words(ssrcs), ...tail]));
}

export function buildRtcpApp(subtype: number, ssrc: number, name: string, data: Uint8Array): Uint8Array {
  const nameBytes = [0, 1, 2, 3].map((i) => name.charCodeAt(i) & 0xff);
  return rtcpPacket(204, subtype, Uint8Array.from([...words([ssrc]), ...nameBytes, ...data]));
}

/** Packets one after another: a compound RTCP packet. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
