// The REST side of the account API (docs/api.md): key login (challenge,
// signature, login), refresh, logout, pairing, and a LoginSession that keeps
// the tokens fresh and serves as a Client's tokenProvider.
import { fromBase64, sign, toBase64, utf8, type SigningKeyPair } from './crypto.js';
import { JunctionError, fromWire } from './errors.js';
import type { TokenProvider, TokenRequest } from './client.js';
import type * as Rest from './gen/rest.js';

export type { Rest };

/** Tokens is the answer of login, refresh and pairing. */
export type Tokens = Rest.Tokens;
/** LoginDevice names the device that logs in: id resumes one, otherwise {name, kind} registers a new one. */
export type LoginDevice = Rest.DeviceInfo;

/** RestOptions are the options of every REST helper. */
export interface RestOptions {
  /** The fetch implementation; default globalThis.fetch. */
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Idempotency-Key header, on mutating routes that honour it. */
  idem?: string;
}

/**
 * restCall sends one REST request to baseUrl ("http://127.0.0.1:7700") + path
 * and returns the decoded JSON answer; an error answer rejects with a
 * JunctionError carrying its code.
 */
export async function restCall<T>(baseUrl: string, method: string, path: string, body: unknown, token: string | undefined, opts: RestOptions = {}): Promise<T> {
  const f = opts.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.idem) headers['idempotency-key'] = opts.idem;
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = JSON.stringify(body);
  if (opts.signal) init.signal = opts.signal;
  const res = await f(baseUrl.replace(/\/+$/, '') + path, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = (json as { error?: unknown } | undefined)?.error;
    if (e) throw fromWire(e);
    throw new JunctionError({ code: res.status >= 500 ? 'internal' : 'bad_request', message: `http ${res.status}: ${text.slice(0, 200)}`, retryable: res.status >= 500 });
  }
  return json as T;
}

/**
 * login signs in with the account key: it asks for a challenge, signs the
 * nonce's bytes and logs in. The first login of a key creates the account.
 */
export async function login(baseUrl: string, key: SigningKeyPair, device: LoginDevice = {}, opts: RestOptions = {}): Promise<Tokens> {
  const publicKey = toBase64(key.publicKey);
  const ch = await restCall<Rest.Challenge>(baseUrl, 'POST', '/api/v1/auth/challenge', { publicKey } satisfies Rest.ChallengeRequest, undefined, opts);
  const nonce = fromBase64(ch.nonce);
  const req: Rest.LoginRequest = { publicKey, nonce: ch.nonce, signature: toBase64(sign(key, nonce)), device };
  return restCall<Tokens>(baseUrl, 'POST', '/api/v1/auth/login', req, undefined, opts);
}

/**
 * refresh exchanges a refresh token for a new pair. Store the new refresh
 * token at once: the old one is used, and presenting it again revokes the
 * whole login.
 */
export function refresh(baseUrl: string, refreshToken: string, opts: RestOptions = {}): Promise<Tokens> {
  return restCall<Tokens>(baseUrl, 'POST', '/api/v1/auth/refresh', { refreshToken } satisfies Rest.RefreshRequest, undefined, opts);
}

/** logout revokes the login of accessToken (its refresh and access tokens); its live WebSocket is closed with 4003. */
export function logout(baseUrl: string, accessToken: string, opts: RestOptions = {}): Promise<Rest.LoggedOut> {
  return restCall<Rest.LoggedOut>(baseUrl, 'POST', '/api/v1/auth/logout', undefined, accessToken, opts);
}

/** me describes the account and device of accessToken. */
export function me(baseUrl: string, accessToken: string, opts: RestOptions = {}): Promise<Rest.Me> {
  return restCall<Rest.Me>(baseUrl, 'GET', '/api/v1/auth/me', undefined, accessToken, opts);
}

/** createPairing creates a pairing code with which a new device joins the account (scope write). */
export function createPairing(baseUrl: string, accessToken: string, opts: RestOptions = {}): Promise<Rest.PairingCode> {
  return restCall<Rest.PairingCode>(baseUrl, 'POST', '/api/v1/devices/pairing', undefined, accessToken, opts);
}

/**
 * pair joins the account of a pairing code as a new device. With key (the
 * device's own ed25519 key) the device proves it holds it by signing
 * "junction-pair:" + CODE, and the key is recorded on the device.
 */
export function pair(baseUrl: string, code: string, device: Rest.DeviceInfo, key?: SigningKeyPair, opts: RestOptions = {}): Promise<Tokens> {
  const req: Rest.PairRequest = { code, device: { ...device } };
  if (key) {
    const norm = normalizePairingCode(code);
    req.device = { ...device, publicKey: toBase64(key.publicKey) };
    req.signature = toBase64(sign(key, utf8('junction-pair:' + norm)));
  }
  return restCall<Tokens>(baseUrl, 'POST', '/api/v1/devices/pair', req, undefined, opts);
}

/** normalizePairingCode is the code as the server reads it: upper case, no spaces or dashes, O→0, I and L→1. */
export function normalizePairingCode(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
}

/**
 * LoginSession holds a login's tokens and keeps them fresh: accessToken()
 * refreshes over REST when the token is near its expiry (or when the
 * server warned with token.expiring). Pass session.tokenProvider as a
 * Client's tokenProvider: reconnects and the in-band refresh then use fresh
 * tokens. onTokens sees every new pair (store the refresh token).
 */
export class LoginSession {
  private inflight: Promise<Tokens> | undefined;
  constructor(
    readonly baseUrl: string,
    private current: Tokens,
    private readonly opts: RestOptions & { onTokens?: (t: Tokens) => void; refreshBeforeMs?: number } = {},
  ) {}

  /** The current tokens. */
  get tokens(): Tokens {
    return this.current;
  }

  /** accessToken returns a valid access token, refreshing first when it expires within refreshBeforeMs (default 60 s) or force is set. */
  async accessToken(force = false): Promise<string> {
    const left = Date.parse(this.current.expiresAt) - Date.now();
    if (force || !(left > (this.opts.refreshBeforeMs ?? 60_000))) await this.refresh();
    return this.current.accessToken;
  }

  /** refresh exchanges the refresh token for a new pair (one at a time). */
  refresh(): Promise<Tokens> {
    this.inflight ??= refresh(this.baseUrl, this.current.refreshToken, this.opts)
      .then((t) => {
        this.current = t;
        this.opts.onTokens?.(t);
        return t;
      })
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  /** logout revokes this login. */
  logout(): Promise<Rest.LoggedOut> {
    return logout(this.baseUrl, this.current.accessToken, this.opts);
  }

  /** tokenProvider is accessToken as a Client's tokenProvider: on token.expiring it always refreshes. */
  readonly tokenProvider: TokenProvider = (req: TokenRequest) => this.accessToken(req.reason === 'expiring');
}
