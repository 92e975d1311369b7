/**
 * Compression of a driver buffer's payload (docs/WIRE.md §2): brotli at
 * quality 4 or raw deflate at level 1, and the way back, from a sealed
 * driver buffer to its messages. Which buffers are worth compressing is
 * the packet driver's choice (tpo/protocol/packet-driver.ts).
 *
 * Decoding bounds the decompressor by the buffer's declared raw length
 * before it runs, so a small buffer cannot expand into a large one.
 */
import * as zlib from 'node:zlib';
import { WireError } from './errors.js';
import { decodeDriverBuffer, decodeMessages, type CarriedMessage, type Codec, type RoutingHeader } from './driver-buffer.js';

/** Brotli quality: about 275 MB/s on 16-64 KiB buffers, a third smaller than deflate level 1 on text (packet-driver.ts). */
const BROTLI_QUALITY = 4;

/** `raw` compressed with `codec` ('none': `raw` itself). */
export function compress(codec: Codec, raw: Uint8Array): Uint8Array {
  if (codec === 'deflate') return zlib.deflateRawSync(raw, { level: 1 });
  if (codec === 'brotli') {
    return zlib.brotliCompressSync(raw, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: raw.length },
    });
  }
  return raw;
}

/**
 * A driver buffer's messages (data are views into the decompressed bytes,
 * or into `buf` when uncompressed). Refuses with a WireError: anything
 * decodeDriverBuffer refuses, a payload that does not decompress, or one
 * that decompresses to other than its declared raw length (the
 * decompressor is stopped at that length, so it cannot be made to expand
 * without bound).
 */
export function openDriverBuffer(buf: Uint8Array): { header: RoutingHeader; messages: CarriedMessage[] } {
  const { header, payload } = decodeDriverBuffer(buf);
  if (header.function !== 'messages') throw new WireError('type', `driver buffer: function ${header.function}, expected messages`, 'function');
  let raw: Uint8Array;
  if (header.codec === 'none') raw = payload;
  else {
    // One byte more than declared: a longer output is detected, not truncated silently.
    const maxOutputLength = header.rawLength + 1;
    try {
      raw = header.codec === 'deflate' ? zlib.inflateRawSync(payload, { maxOutputLength }) : zlib.brotliDecompressSync(payload, { maxOutputLength });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new WireError(
        code === 'ERR_BUFFER_TOO_LARGE' ? 'length' : 'value',
        `driver buffer: ${header.codec} payload does not decompress to ${header.rawLength} bytes (${code ?? (err as Error).message})`,
        'payload',
      );
    }
    if (raw.length !== header.rawLength)
      throw new WireError('length', `driver buffer: decompressed to ${raw.length} bytes, declared ${header.rawLength}`, 'rawLength');
  }
  return { header, messages: decodeMessages(raw, header.count) };
}
