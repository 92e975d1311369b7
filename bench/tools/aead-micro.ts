/**
 * Micro-benchmark of the TPO datagram AEAD (issue 18): µs per seal and per
 * open of one datagram (a 20-byte field in clear, the segment, the tag)
 * through node:crypto (a cipher object per datagram), OpenSSL's EVP with
 * reused contexts (src/sys/aead.ts, what the gateways use) and, when it can
 * be loaded, libsodium through sodium-native (not a project dependency:
 * `--sodium-dir DIR` names a folder whose node_modules holds it). Rounds
 * alternate between the implementations; medians (min–max) of --rounds.
 *
 *   node --import tsx bench/tools/aead-micro.ts [--sizes 1350,8900] [--n 20000] [--rounds 5] [--sodium-dir DIR]
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openDatagramNode, sealDatagramNode } from '../../src/tpo/protocol/datagram-crypto.js';
import { evpChaCha20Poly1305 } from '../../src/sys/aead.js';
import { flag } from './load-common.js';

const SIZES = flag('sizes', '1350,8900').split(',').map(Number);
const N = Number(flag('n', '20000'));
const ROUNDS = Number(flag('rounds', '5'));
const SODIUM_DIR = process.argv.includes('--sodium-dir') ? flag('sodium-dir', '.') : process.cwd();

interface Sodium {
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(c: Buffer, mac: Buffer, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Buffer, k: Buffer): number;
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(
    m: Buffer,
    nsec: null,
    c: Uint8Array,
    mac: Uint8Array,
    ad: Uint8Array | null,
    npub: Buffer,
    k: Buffer,
  ): void;
}
function loadSodium(): Sodium | undefined {
  try {
    return createRequire(join(SODIUM_DIR, 'package.json'))('sodium-native') as Sodium;
  } catch {
    return undefined;
  }
}

interface Impl {
  name: string;
  seal: (n: number) => Uint8Array;
  open: (n: number, d: Uint8Array) => Uint8Array | undefined;
}

const key = randomBytes(32);
const field = randomBytes(20);
const nonce = Buffer.alloc(12);
function nonceOf(n: number): Buffer {
  nonce.writeUInt32BE(n, 8);
  return nonce;
}

function impls(segment: Buffer): Impl[] {
  const out: Impl[] = [
    {
      name: 'node:crypto',
      seal: (n) => sealDatagramNode(key, n, field, segment),
      open: (n, d) => openDatagramNode(key, n, d, field.length),
    },
  ];
  const evp = evpChaCha20Poly1305();
  if (evp)
    out.push({
      name: 'evp (sys/aead.ts)',
      seal: (n) => evp.seal(key, nonceOf(n), field, segment)!,
      open: (n, d) => evp.open(key, nonceOf(n), d, field.length) ?? undefined,
    });
  const s = loadSodium();
  if (s) {
    out.push({
      name: 'sodium-native',
      seal: (n) => {
        const d = Buffer.allocUnsafe(field.length + segment.length + 16);
        field.copy(d, 0);
        const body = d.subarray(field.length, field.length + segment.length);
        s.crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, d.subarray(d.length - 16), segment, field, null, nonceOf(n), key);
        return d;
      },
      open: (n, d) => {
        const bodyLength = d.length - field.length - 16;
        const m = Buffer.allocUnsafe(bodyLength);
        try {
          s.crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            m,
            null,
            d.subarray(field.length, d.length - 16),
            d.subarray(d.length - 16),
            d.subarray(0, field.length),
            nonceOf(n),
            key,
          );
        } catch {
          return undefined;
        }
        return m;
      },
    });
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

for (const size of SIZES) {
  const segment = randomBytes(size);
  const list = impls(segment);
  // Each sealed datagram opens with every implementation (the same bytes).
  const ref = list[0]!.seal(1);
  for (const i of list) if (Buffer.compare(Buffer.from(i.seal(1)), Buffer.from(ref)) !== 0) throw new Error(`${i.name} seals other bytes`);
  const sealUs = new Map<string, number[]>(list.map((i) => [i.name, []]));
  const openUs = new Map<string, number[]>(list.map((i) => [i.name, []]));
  for (let r = 0; r < ROUNDS + 1; r++) {
    for (const i of list) {
      let t = performance.now();
      let d: Uint8Array = ref;
      for (let n = 0; n < N; n++) d = i.seal(n);
      const s = ((performance.now() - t) * 1000) / N;
      const sealed = i.seal(7);
      t = performance.now();
      for (let n = 0; n < N; n++) if (!i.open(7, sealed)) throw new Error('open failed');
      const o = ((performance.now() - t) * 1000) / N;
      if (r > 0 && d.length) {
        sealUs.get(i.name)!.push(s);
        openUs.get(i.name)!.push(o);
      }
    }
  }
  for (const i of list) {
    const fmt = (xs: number[]) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
    process.stdout.write(`${size} B  ${i.name.padEnd(18)} seal ${fmt(sealUs.get(i.name)!)} µs  open ${fmt(openUs.get(i.name)!)} µs\n`);
  }
}
