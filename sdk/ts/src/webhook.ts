// Standard Webhooks verification (https://www.standardwebhooks.com), as
// Junction signs its app webhooks (docs/apps-webhooks.md): the HMAC-SHA256
// of "<webhook-id>.<webhook-timestamp>.<body>" under the app's secret
// (whsec_<base64>), base64, in webhook-signature as "v1,<sig>" entries
// separated by spaces. The byte-for-byte twin of the Go package webhook.
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { fromBase64, toBase64, utf8 } from './crypto.js';

export const HEADER_ID = 'webhook-id';
export const HEADER_TIMESTAMP = 'webhook-timestamp';
export const HEADER_SIGNATURE = 'webhook-signature';
export const SECRET_PREFIX = 'whsec_';
/** How far webhook-timestamp may be from now, either way: 5 minutes. */
export const DEFAULT_TOLERANCE_MS = 5 * 60_000;
const MIN_SECRET_BYTES = 24;
const MAX_SECRET_BYTES = 64;
const MAX_ID_LEN = 256;
const MAX_SIGNATURE_HEADER = 4096;
const MAX_SIGNATURES = 16;

/** Why a webhook was refused. */
export type WebhookErrorReason =
  | 'bad_secret'
  | 'missing_header'
  | 'bad_id'
  | 'bad_timestamp'
  | 'timestamp_too_old'
  | 'timestamp_too_new'
  | 'bad_signatures'
  | 'signature_mismatch'
  | 'body_too_large';

/** WebhookError is a refused webhook (answer 401; 413 for body_too_large). */
export class WebhookError extends Error {
  constructor(
    readonly reason: WebhookErrorReason,
    message: string,
  ) {
    super(`webhook: ${message}`);
    this.name = 'WebhookError';
  }
}

/** The headers of a request: a fetch Headers, or node:http's IncomingHttpHeaders (lower-case names). */
export type HeadersLike = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

function header(h: HeadersLike, name: string): string {
  if (typeof (h as { get?: unknown }).get === 'function') return (h as { get(n: string): string | null }).get(name) ?? '';
  const v = (h as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(v) ? v.join(', ') : (v ?? '');
}

const STRICT_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function strictBase64(s: string): Uint8Array | undefined {
  if (!STRICT_B64.test(s)) return undefined;
  return fromBase64(s);
}

/** parseSecret decodes a whsec_… secret into its key bytes (24 to 64). */
export function parseSecret(secret: string): Uint8Array {
  if (!secret.startsWith(SECRET_PREFIX)) throw new WebhookError('bad_secret', `bad secret: want the "${SECRET_PREFIX}" prefix`);
  const key = strictBase64(secret.slice(SECRET_PREFIX.length));
  if (!key) throw new WebhookError('bad_secret', `bad secret: not standard base64 after "${SECRET_PREFIX}"`);
  if (key.length < MIN_SECRET_BYTES || key.length > MAX_SECRET_BYTES) throw new WebhookError('bad_secret', `bad secret: ${key.length} bytes, want ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES}`);
  return key;
}

function checkId(id: string): void {
  if (id.length === 0 || id.length > MAX_ID_LEN) throw new WebhookError('bad_id', `bad webhook-id: length ${id.length}, want 1 to ${MAX_ID_LEN}`);
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x2c) throw new WebhookError('bad_id', `bad webhook-id: character ${c} at ${i}`);
  }
}

function toBytes(body: Uint8Array | string): Uint8Array {
  return typeof body === 'string' ? utf8(body) : body;
}

function mac(key: Uint8Array, id: string, ts: number, body: Uint8Array): Uint8Array {
  const head = utf8(`${id}.${ts}.`);
  const msg = new Uint8Array(head.length + body.length);
  msg.set(head);
  msg.set(body, head.length);
  return hmac(sha256, key, msg);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/**
 * signWebhook returns the webhook-signature entry ("v1,<base64>") of body
 * sent as id at tsSeconds: for a backend's own tests, or a relay that
 * re-signs.
 */
export function signWebhook(secret: string, id: string, tsSeconds: number, body: Uint8Array | string): string {
  checkId(id);
  return 'v1,' + toBase64(mac(parseSecret(secret), id, Math.trunc(tsSeconds), toBytes(body)));
}

/** A verified webhook's identity. */
export interface WebhookMessage {
  /** webhook-id: every retry of one delivery carries the same; dedupe on it. */
  id: string;
  /** webhook-timestamp, in milliseconds since the epoch. */
  timestampMs: number;
}

export interface VerifierOptions {
  /** The app's webhook secrets (whsec_…): during a rotation the new and the old one. */
  secrets: string[];
  /** How far webhook-timestamp may be from now; default 5 minutes. */
  toleranceMs?: number;
  /** The clock, in milliseconds; default Date.now. */
  now?: () => number;
}

/**
 * WebhookVerifier checks Junction's signed webhooks. verify throws a
 * WebhookError for a request to refuse. The secrets are parsed once, by the
 * constructor (a bad one throws).
 */
export class WebhookVerifier {
  private readonly keys: Uint8Array[];
  private readonly toleranceMs: number;
  private readonly now: () => number;

  constructor(opts: VerifierOptions) {
    if (!opts.secrets?.length) throw new WebhookError('bad_secret', 'no secret to verify with');
    this.keys = opts.secrets.map(parseSecret);
    this.toleranceMs = opts.toleranceMs && opts.toleranceMs > 0 ? opts.toleranceMs : DEFAULT_TOLERANCE_MS;
    this.now = opts.now ?? Date.now;
  }

  /** verify checks the headers and the body exactly as received (not re-serialized JSON). */
  verify(headers: HeadersLike, body: Uint8Array | string): WebhookMessage {
    const id = header(headers, HEADER_ID);
    const tsText = header(headers, HEADER_TIMESTAMP);
    const sigText = header(headers, HEADER_SIGNATURE);
    for (const [name, v] of [
      [HEADER_ID, id],
      [HEADER_TIMESTAMP, tsText],
      [HEADER_SIGNATURE, sigText],
    ] as const) {
      if (!v) throw new WebhookError('missing_header', `missing header: ${name}`);
    }
    checkId(id);
    if (!/^[0-9]{1,12}$/.test(tsText)) throw new WebhookError('bad_timestamp', `bad webhook-timestamp: ${JSON.stringify(tsText.slice(0, 32))}`);
    const ts = Number(tsText);
    const d = this.now() - ts * 1000;
    if (d > this.toleranceMs) throw new WebhookError('timestamp_too_old', `webhook-timestamp too old: signed ${Math.trunc(d / 1000)} s ago`);
    if (-d > this.toleranceMs) throw new WebhookError('timestamp_too_new', `webhook-timestamp too far in the future: ${Math.trunc(-d / 1000)} s ahead`);
    const sigs = parseSignatures(sigText);
    const b = toBytes(body);
    for (const key of this.keys) {
      const want = mac(key, id, ts, b);
      for (const s of sigs) if (equal(s, want)) return { id, timestampMs: ts * 1000 };
    }
    throw new WebhookError('signature_mismatch', 'no signature matches');
  }
}

/** parseSignatures returns the v1 signatures of a webhook-signature header; other versions are skipped. */
function parseSignatures(header: string): Uint8Array[] {
  if (header.length > MAX_SIGNATURE_HEADER) throw new WebhookError('bad_signatures', `webhook-signature of ${header.length} bytes, limit ${MAX_SIGNATURE_HEADER}`);
  const entries = header.split(/[ \t\r\n]+/).filter(Boolean);
  if (entries.length > MAX_SIGNATURES) throw new WebhookError('bad_signatures', `more than ${MAX_SIGNATURES} signatures`);
  const v1: Uint8Array[] = [];
  entries.forEach((e, i) => {
    const comma = e.indexOf(',');
    if (comma <= 0) throw new WebhookError('bad_signatures', `entry ${i + 1} is not <version>,<base64>`);
    if (e.slice(0, comma) !== 'v1') return;
    const v = strictBase64(e.slice(comma + 1));
    if (!v || v.length === 0) throw new WebhookError('bad_signatures', `entry ${i + 1} (v1) is not base64`);
    v1.push(v);
  });
  if (v1.length === 0) throw new WebhookError('bad_signatures', 'no v1 signature in webhook-signature');
  return v1;
}
