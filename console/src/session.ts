// session.ts: the signed-in console: one WebSocket client (the SDK's) and
// REST calls with the same credential. A token is kept in sessionStorage
// (this tab only, gone when it closes); a key login keeps its refresh token
// there, never the key.
import { Client, JunctionError, LoginSession, e2e, login, restCall, type ClientOptions, type Tokens, type TokenProvider, type Welcome } from '../../sdk/ts/src/index.js';

const TOKEN = 'junction.console.token';
const REFRESH = 'junction.console.refresh';

/** Session is the signed-in state every page uses. */
export class Session {
  readonly base = location.origin;
  private constructor(
    readonly client: Client,
    private readonly accessToken: () => Promise<string>,
    private readonly keyLogin: LoginSession | undefined,
  ) {}

  /** welcome is the server's welcome of the current connection. */
  get welcome(): Welcome | undefined {
    return this.client.welcome;
  }

  /** admin reports whether the credential has scope admin. */
  get admin(): boolean {
    return this.welcome?.principal.scopes.includes('admin') ?? false;
  }

  /** who names the principal: user / device. */
  get who(): string {
    const p = this.welcome?.principal;
    return p ? `${p.userId ?? '?'} / ${p.deviceId ?? '?'}` : '';
  }

  /** rest calls the REST API with the session's credential. */
  async rest<T>(method: string, path: string, body?: unknown): Promise<T> {
    return restCall<T>(this.base, method, path, body, await this.accessToken());
  }

  /** fromToken connects with an access token (an admin token: junction token --scope admin). */
  static async fromToken(token: string): Promise<Session> {
    token = token.trim();
    if (!token) throw new JunctionError({ code: 'bad_request', message: 'paste an access token' });
    // A browser cannot see why a WebSocket handshake was refused: ask over
    // REST first, so that an expired or unknown token says so. Any answer
    // but 401 (403 for a token without admin) means the token verifies.
    try {
      await restCall(location.origin, 'GET', '/api/v1/admin/lockdown', undefined, token);
    } catch (e) {
      if ((e as JunctionError).code === 'unauthorized') throw e;
    }
    const s = new Session(newClient({ token }), async () => token, undefined);
    await s.client.connect();
    sessionStorage.setItem(TOKEN, token);
    return s;
  }

  /** fromKey signs in with an account key (base64 seed of 32 bytes): the key-login flow of docs/api.md. */
  static async fromKey(seedB64: string, deviceName: string): Promise<Session> {
    let seed: Uint8Array;
    try {
      seed = e2e.fromBase64(seedB64.trim());
    } catch {
      throw new JunctionError({ code: 'bad_request', message: 'the key is not base64' });
    }
    if (seed.length !== e2e.KEY_SIZE) throw new JunctionError({ code: 'bad_request', message: `the key must be ${e2e.KEY_SIZE} bytes, base64` });
    const tokens = await login(location.origin, e2e.signingKeyFromSeed(seed), { name: deviceName || 'console', kind: 'browser' });
    return Session.fromTokens(tokens);
  }

  private static async fromTokens(tokens: Tokens): Promise<Session> {
    const ls = new LoginSession(location.origin, tokens, { onTokens: (t) => sessionStorage.setItem(REFRESH, t.refreshToken) });
    sessionStorage.setItem(REFRESH, tokens.refreshToken);
    const s = new Session(newClient({ tokenProvider: ls.tokenProvider }), () => ls.accessToken(), ls);
    await s.client.connect();
    return s;
  }

  /** restore reconnects a session this tab signed in earlier, or returns undefined. */
  static async restore(): Promise<Session | undefined> {
    const token = sessionStorage.getItem(TOKEN);
    if (token) return Session.fromToken(token).catch(() => (sessionStorage.removeItem(TOKEN), undefined));
    const rt = sessionStorage.getItem(REFRESH);
    if (!rt) return undefined;
    try {
      const ls = new LoginSession(location.origin, { accessToken: '', refreshToken: rt, expiresAt: new Date(0).toISOString() } as Tokens);
      return await Session.fromTokens(await ls.refresh());
    } catch {
      sessionStorage.removeItem(REFRESH);
      return undefined;
    }
  }

  /** signOut closes the connection, ends a key login and forgets the credential. */
  async signOut(): Promise<void> {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(REFRESH);
    await this.keyLogin?.logout().catch(() => {});
    this.client.close();
  }
}

function newClient(cred: { token: string } | { tokenProvider: TokenProvider }): Client {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  const opts: ClientOptions = { url, ...cred, logger: { warn() {}, debug() {} } };
  return new Client(opts);
}

/** newKey makes an account key and returns its seed in base64 (what the sign-in form takes). */
export function newKeySeed(): string {
  return e2e.toBase64(e2e.newSigningKey().seed);
}
