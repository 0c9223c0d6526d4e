// End-to-end encryption helpers, byte for byte the formats of the Go SDK
// (client/crypto.go), which are plain NaCl (TweetNaCl, libsodium)
// constructions:
//
//   seal / open:          nonce (24 random bytes) || secretbox(plaintext, nonce, key)
//   shareKey / openKey:   ephemeral public key (32) || nonce (24) || box(dataKey, nonce, recipient, ephemeral secret)
//
// secretbox is XSalsa20-Poly1305; box is X25519 then HSalsa20 (the NaCl
// "beforenm" key) then secretbox. Account keys are ed25519 (key login and
// pairing signatures). The primitives are the audited @noble libraries.
import { hsalsa, xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';

/** KEY_SIZE is the size of data keys and box keys. */
export const KEY_SIZE = 32;
/** SEAL_OVERHEAD is what seal adds to the plaintext (nonce and tag). */
export const SEAL_OVERHEAD = 24 + 16;
/** SHARE_OVERHEAD is what shareKey adds to the 32-byte data key. */
export const SHARE_OVERHEAD = KEY_SIZE + 24 + 16;

/** DecryptError reports ciphertext that is malformed, was made with another key, or was altered. */
export class DecryptError extends Error {
  constructor() {
    super('junction: decrypt: message forged, altered or for another key');
    this.name = 'DecryptError';
  }
}

/** randomBytes returns n bytes from the platform's CSPRNG (Web Crypto). */
export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  // getRandomValues fills at most 65536 bytes per call.
  for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

/** newDataKey returns a random data key for seal and open. */
export function newDataKey(): Uint8Array {
  return randomBytes(KEY_SIZE);
}

function checkKey(k: Uint8Array, what: string): void {
  if (!(k instanceof Uint8Array) || k.length !== KEY_SIZE) throw new TypeError(`junction: ${what} must be ${KEY_SIZE} bytes`);
}

/** seal encrypts and authenticates plaintext with key under a random nonce, which it prefixes to the result. */
export function seal(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
  checkKey(key, 'data key');
  const nonce = randomBytes(24);
  const box = xsalsa20poly1305(key, nonce).encrypt(plaintext);
  const out = new Uint8Array(24 + box.length);
  out.set(nonce, 0);
  out.set(box, 24);
  return out;
}

/** open decrypts what seal produced with the same key; it throws DecryptError otherwise. */
export function open(key: Uint8Array, sealed: Uint8Array): Uint8Array {
  checkKey(key, 'data key');
  if (sealed.length < SEAL_OVERHEAD) throw new DecryptError();
  try {
    return xsalsa20poly1305(key, sealed.subarray(0, 24)).decrypt(sealed.subarray(24));
  } catch {
    throw new DecryptError();
  }
}

/** BoxKeyPair is an X25519 key pair with which a device receives shared data keys. */
export interface BoxKeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** newBoxKey returns an X25519 key pair (nacl.box.keyPair()). */
export function newBoxKey(): BoxKeyPair {
  const secretKey = randomBytes(KEY_SIZE);
  return { publicKey: x25519.getPublicKey(secretKey), secretKey };
}

// sigma is "expand 32-byte k" as little-endian words.
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

function words(b: Uint8Array): Uint32Array {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const w = new Uint32Array(b.length / 4);
  for (let i = 0; i < w.length; i++) w[i] = v.getUint32(i * 4, true);
  return w;
}

/** boxBeforenm is NaCl's crypto_box_beforenm: HSalsa20 of the X25519 shared secret with a zero nonce. */
function boxBeforenm(theirPublic: Uint8Array, mySecret: Uint8Array): Uint8Array {
  const shared = x25519.getSharedSecret(mySecret, theirPublic);
  const out = new Uint32Array(8);
  hsalsa(SIGMA, words(shared), new Uint32Array(4), out);
  const k = new Uint8Array(32);
  const v = new DataView(k.buffer);
  for (let i = 0; i < 8; i++) v.setUint32(i * 4, out[i]!, true);
  shared.fill(0);
  return k;
}

/** shareKey encrypts dataKey to the device whose box public key is recipient. */
export function shareKey(dataKey: Uint8Array, recipient: Uint8Array): Uint8Array {
  checkKey(dataKey, 'data key');
  checkKey(recipient, 'recipient public key');
  const eph = newBoxKey();
  const nonce = randomBytes(24);
  const k = boxBeforenm(recipient, eph.secretKey);
  const box = xsalsa20poly1305(k, nonce).encrypt(dataKey);
  k.fill(0);
  eph.secretKey.fill(0);
  const out = new Uint8Array(KEY_SIZE + 24 + box.length);
  out.set(eph.publicKey, 0);
  out.set(nonce, KEY_SIZE);
  out.set(box, KEY_SIZE + 24);
  return out;
}

/** openKey decrypts a data key shared with shareKey, with the recipient's box secret key. */
export function openKey(shared: Uint8Array, secretKey: Uint8Array): Uint8Array {
  checkKey(secretKey, 'box secret key');
  if (shared.length !== SHARE_OVERHEAD + KEY_SIZE) throw new DecryptError();
  let k: Uint8Array;
  try {
    k = boxBeforenm(shared.subarray(0, KEY_SIZE), secretKey);
  } catch {
    throw new DecryptError();
  }
  try {
    const plain = xsalsa20poly1305(k, shared.subarray(KEY_SIZE, KEY_SIZE + 24)).decrypt(shared.subarray(KEY_SIZE + 24));
    if (plain.length !== KEY_SIZE) throw new DecryptError();
    return plain;
  } catch {
    throw new DecryptError();
  } finally {
    k.fill(0);
  }
}

/** SigningKeyPair is an ed25519 account (or device) key: a 32-byte seed and its public key. */
export interface SigningKeyPair {
  publicKey: Uint8Array;
  /** The 32-byte seed (Go's ed25519.NewKeyFromSeed; TweetNaCl's secretKey is seed || publicKey). */
  seed: Uint8Array;
}

/** newSigningKey returns a fresh ed25519 key pair. */
export function newSigningKey(): SigningKeyPair {
  return signingKeyFromSeed(randomBytes(32));
}

/** signingKeyFromSeed returns the ed25519 key pair of a 32-byte seed (or of a 64-byte TweetNaCl secret key). */
export function signingKeyFromSeed(seed: Uint8Array): SigningKeyPair {
  if (seed.length === 64) seed = seed.subarray(0, 32);
  if (seed.length !== 32) throw new TypeError('junction: ed25519 seed must be 32 bytes');
  const s = new Uint8Array(seed);
  return { seed: s, publicKey: ed25519.getPublicKey(s) };
}

/** sign returns the ed25519 detached signature of msg. */
export function sign(key: SigningKeyPair, msg: Uint8Array): Uint8Array {
  return ed25519.sign(msg, key.seed);
}

/** verify checks an ed25519 detached signature. */
export function verify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return ed25519.verify(sig, msg, publicKey);
  } catch {
    return false;
  }
}

/** toBase64 encodes bytes as standard base64 with padding, as the wire wants binary values. */
export function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** fromBase64 decodes standard base64 (with padding). */
export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}

/** utf8 encodes a string as UTF-8 bytes; fromUtf8 decodes them. */
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
export const fromUtf8 = (b: Uint8Array): string => new TextDecoder('utf-8', { fatal: true }).decode(b);
