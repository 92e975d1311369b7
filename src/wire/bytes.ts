/**
 * A byte array whose contents are not zeroed first: for buffers the caller
 * fills completely before any byte of them is read or handed out (a copy
 * target, a buffer built message by message and handed out only up to
 * what was written). `new Uint8Array(n)` zero-fills, which on the TPO data
 * path (a 32 KB driver buffer per 32 KB carried, a receive batch per
 * recvmmsg) showed as 2–4 % of a gateway thread in memset.
 *
 * A plain Uint8Array over its own ArrayBuffer (not a pooled Buffer, whose
 * slice() would not copy and whose pool would be kept alive by it).
 */
export function uninitializedBytes(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.allocUnsafeSlow(n).buffer as ArrayBuffer, 0, n);
}
