import { CloseError, ClosedError, HandshakeError, JunctionError, connectionLost, fromWire, notConnected } from './errors.js';
import { backoffDelay, disconnectFor, isTerminal, reconnectAdvised, shutdownDelay } from './disconnect.js';
import type { Error as ErrorObject, EventData, Meta, Methods, Welcome } from './gen/protocol.js';
import { history, presence, publish, subscribe, type Publication, type SubscribeOptions, type Subscription } from './channel.js';
import { toBase64 } from './crypto.js';
import type { HistoryResult, Message, MessageList, PresenceResult, RPCListResult, Session, Updates } from './gen/protocol.js';
import { callDevice, rpcList, serve, type CallDeviceOptions, type RPCHandler } from './rpc.js';
import { hasNodeExtras, utf8Length, type WebSocketConstructor, type WebSocketLike } from './socket.js';

/** The subprotocol of protocol v1, and the prefix of the bearer subprotocol (docs/PROTOCOL.md §1). */
export const SUBPROTOCOL = 'junction.v1';
export const BEARER_PREFIX = 'junction.bearer.';

/** Defaults of ClientOptions. */
export const DEFAULTS = {
  minBackoffMs: 250,
  maxBackoffMs: 30_000,
  callTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  maxHandlers: 64,
} as const;

/** Frame is one protocol frame (docs/PROTOCOL.md §2). */
export interface Frame {
  type: 'req' | 'res' | 'event';
  id?: string;
  method?: string;
  params?: unknown;
  idem?: string;
  meta?: Meta;
  ok?: boolean;
  result?: unknown;
  error?: ErrorObject;
  event?: string;
  topic?: string;
  epoch?: string;
  offset?: number;
  data?: unknown;
}

/** Why the token provider is asked for a token. */
export interface TokenRequest {
  /** connect: for a (re)connect; expiring: the server sent token.expiring, the token is refreshed in-band. */
  reason: 'connect' | 'expiring';
  /** With reason expiring: when the connection's current credential expires. */
  expiresAtMs?: number;
}

/** TokenProvider returns a credential for each (re)connect and for the in-band refresh. */
export type TokenProvider = (req: TokenRequest) => string | Promise<string>;

/** State is the connection state of a Client. */
export type State = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

/** Logger receives the client's logs. */
export interface Logger {
  warn(msg: string, ...args: unknown[]): void;
  debug(msg: string, ...args: unknown[]): void;
}

/** ClientOptions configure a Client. Only url is required. */
export interface ClientOptions {
  /** The WebSocket endpoint, ws://host:port/ws or wss://host/ws. */
  url: string;
  /** The credential (an access token), sent as the junction.bearer.<token> subprotocol. */
  token?: string;
  /** Returns a fresh credential for each (re)connect and for the in-band refresh on token.expiring; wins over token. */
  tokenProvider?: TokenProvider;
  /**
   * Extra HTTP headers of the WebSocket upgrade (an app session's
   * Junction-Ticket or Junction-Resume). Only WebSocket implementations that
   * take options, such as the `ws` package's, can send them: browsers
   * cannot (a browser's WebSocket ignores them).
   */
  headers?: Record<string, string>;
  /** The WebSocket implementation; default globalThis.WebSocket (pass `ws`'s WebSocket in Node 20). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect when a connection ends, unless its close code advises against it. Default true. */
  reconnect?: boolean;
  /** Bounds of the delay between reconnect attempts (exponential backoff with jitter). Defaults 250 ms and 30 s. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Timeout of a call that names none. Default 30 s. */
  callTimeoutMs?: number;
  /** Bound of one connect: upgrade and welcome. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Server requests (RPC) served at once; beyond it they are answered rate_limited. Default 64. */
  maxHandlers?: number;
  /** Called on every state change, with the error that caused it when there is one. */
  onState?: (state: State, err?: unknown) => void;
  /** Sees every frame sent (sent true) or received, as its JSON text. */
  onFrame?: (sent: boolean, frame: string) => void;
  /** Receives the client's logs; default: warnings to console.warn, no debug. */
  logger?: Logger;
}

/** CallOptions configure one call. */
export interface CallOptions {
  /** Fail with code timeout when no answer came within this; default ClientOptions.callTimeoutMs. */
  timeoutMs?: number;
  /** Abort the call: it rejects with the signal's reason; a late answer is dropped. */
  signal?: AbortSignal;
  /** Idempotency key: the server runs the request at most once per principal and key. */
  idem?: string;
}

/** A request the server sent to this client (RPC relayed by the gateway). */
export type RequestHandler = (frame: Frame, signal: AbortSignal) => unknown | Promise<unknown>;

type EventHandler = (data: any, frame: Frame) => void;
type ConnectHook = (reconnected: boolean, signal: AbortSignal) => void | Promise<void>;

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  cleanup(): void;
}

/** Conn is one WebSocket connection. */
class Conn {
  welcome: Welcome | undefined;
  ended = false;
  closeCode = 0;
  closeReason = '';
  shutdownAfterMs: number | undefined;
  connectedAt = 0;
  handshakeError: HandshakeError | undefined;
  readonly pending = new Map<string, Pending>();
  readonly life = new AbortController();
  readonly inflight = new Map<string, AbortController>();
  outbox: string[] = [];
  flushing = false;
  lastRx = 0; // when the last frame (or, with ws, ping) arrived
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  deadTimer: ReturnType<typeof setTimeout> | undefined;
  waiter: { resolve(): void; reject(e: unknown): void } | undefined;
  constructor(readonly ws: WebSocketLike) {}
  get maxFrame(): number {
    return this.welcome?.limits.maxFrameBytes || 65536;
  }
  get batch(): boolean {
    return this.welcome?.features.includes('batch') ?? false;
  }
}

const consoleLogger: Logger = {
  warn: (msg, ...args) => console.warn(msg, ...args),
  debug: () => {},
};

/**
 * Client is a connection to a Junction server that survives reconnects. It
 * runs in browsers and in Node ≥ 20 (pass a WebSocket implementation such as
 * `ws` where there is no global one).
 *
 * Register event handlers, served methods and subscriptions, then call
 * connect. Events are delivered in arrival order, synchronously from the
 * socket's message handler: a handler should be quick.
 */
export class Client {
  private readonly opts: Required<Pick<ClientOptions, 'minBackoffMs' | 'maxBackoffMs' | 'callTimeoutMs' | 'handshakeTimeoutMs' | 'maxHandlers' | 'reconnect'>> & ClientOptions;
  private readonly log: Logger;
  private readonly WS: WebSocketConstructor;
  private nextId = 0;
  private started = false;
  private closing = false;
  private finished = false;
  private cur: Conn | undefined;
  private dialing: Conn | undefined; // the connection being opened, until its welcome
  private last: Welcome | undefined;
  private handlers = new Map<string, EventHandler[]>();
  private methods = new Map<string, RequestHandler>();
  private hooks: ConnectHook[] = [];
  private serving = 0;
  private refreshing = false;
  private sleeper: { timer: ReturnType<typeof setTimeout>; wake(): void } | undefined;
  private doneWaiters: (() => void)[] = [];
  private _state: State = 'idle';
  private _closeCode = 0;

  constructor(opts: ClientOptions) {
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError('junction: no WebSocket implementation: pass ClientOptions.WebSocket (for example the ws package\'s WebSocket in Node 20)');
    this.WS = WS;
    this.opts = {
      ...opts,
      minBackoffMs: opts.minBackoffMs && opts.minBackoffMs > 0 ? opts.minBackoffMs : DEFAULTS.minBackoffMs,
      maxBackoffMs: opts.maxBackoffMs && opts.maxBackoffMs > 0 ? opts.maxBackoffMs : DEFAULTS.maxBackoffMs,
      callTimeoutMs: opts.callTimeoutMs && opts.callTimeoutMs > 0 ? opts.callTimeoutMs : DEFAULTS.callTimeoutMs,
      handshakeTimeoutMs: opts.handshakeTimeoutMs && opts.handshakeTimeoutMs > 0 ? opts.handshakeTimeoutMs : DEFAULTS.handshakeTimeoutMs,
      maxHandlers: opts.maxHandlers && opts.maxHandlers > 0 ? opts.maxHandlers : DEFAULTS.maxHandlers,
      reconnect: opts.reconnect ?? true,
    };
    if (this.opts.maxBackoffMs < this.opts.minBackoffMs) this.opts.maxBackoffMs = this.opts.minBackoffMs;
    this.log = opts.logger ?? consoleLogger;
  }

  /** The current state. */
  get state(): State {
    return this._state;
  }

  /** The welcome of the current connection (of the latest while disconnected; undefined before the first). */
  get welcome(): Welcome | undefined {
    return this.last;
  }

  /** The timeout of a call that names none. */
  get callTimeoutMs(): number {
    return this.opts.callTimeoutMs;
  }

  /** The close code of the most recent disconnect; 0 when it ended without a close frame from the server. */
  get closeCode(): number {
    return this._closeCode;
  }

  /**
   * connect makes the first connection: it opens the WebSocket, waits for the
   * welcome event and the onConnect hooks (subscriptions, served methods), and
   * resolves. It never retries the first connection; reconnect governs later
   * disconnects. On failure the client is closed.
   */
  async connect(opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.closing || this.finished) throw new ClosedError();
    if (this.started) throw new Error('junction: connect: already connected');
    this.started = true;
    this.setState('connecting');
    let conn: Conn;
    try {
      conn = await this.dial(opts.signal);
    } catch (err) {
      this.finish(this.closing ? undefined : err);
      throw this.closing ? new ClosedError() : err;
    }
    await this.connected(conn, false);
  }

  /** close closes the connection with code 1000 and stops reconnecting. Calls in flight fail with ClosedError. Safe to call twice. */
  close(): Promise<void> {
    this.closing = true;
    this.sleeper?.wake();
    if (this.dialing) this.endConn(this.dialing, 0, 'client closed', true, new ClosedError());
    if (this.cur) this.endConn(this.cur, 1000, 'client closed', true);
    else if (!this.started || this._state !== 'connecting') this.finish(undefined);
    return this.done();
  }

  /** done resolves when the client is closed for good (close, or a disconnect with no reconnect to follow). */
  done(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.doneWaiters.push(resolve));
  }

  /**
   * on registers fn for the events named event ("*" for all) and returns a
   * function that removes it. fn gets the event's data and the whole frame.
   * The welcome event of each connection is delivered too.
   */
  on<E extends keyof EventData>(event: E, fn: (data: EventData[E], frame: Frame) => void): () => void;
  on(event: string, fn: (data: unknown, frame: Frame) => void): () => void;
  on(event: string, fn: EventHandler): () => void {
    const list = this.handlers.get(event) ?? [];
    list.push(fn);
    this.handlers.set(event, list);
    return () => {
      const l = this.handlers.get(event);
      if (l) this.handlers.set(event, l.filter((f) => f !== fn));
    };
  }

  /**
   * onConnect registers fn to run after each welcome: reconnected false for
   * the first connection (before connect resolves), true after each
   * reconnect. signal aborts when that connection ends.
   */
  onConnect(fn: ConnectHook): () => void {
    this.hooks.push(fn);
    return () => {
      this.hooks = this.hooks.filter((f) => f !== fn);
    };
  }

  /**
   * handle serves the requests for method that the server sends to this
   * client. fn's result is sent back as the response's result; a thrown
   * JunctionError is sent with its code, anything else as internal.
   * signal aborts when the connection ends.
   */
  handle(method: string, fn: RequestHandler): void {
    this.methods.set(method, fn);
  }

  /**
   * call sends a request and resolves with its result. A failed response
   * rejects with a JunctionError carrying the server's code. While the
   * client is disconnected a call fails at once with code unavailable
   * (retryable); a call whose connection dies before the answer fails the
   * same way (the server may or may not have run it: repeat it with idem).
   */
  call<M extends keyof Methods>(method: M, params?: Methods[M]['params'], opts?: CallOptions): Promise<Methods[M]['result']>;
  call(method: string, params?: object, opts?: CallOptions): Promise<unknown>;
  call(method: string, params?: object, opts: CallOptions = {}): Promise<unknown> {
    return this.request(method, params, opts).promise;
  }

  /** @internal request sends a request and returns its id beside the promise of its answer. */
  request(method: string, params: object | undefined, opts: CallOptions & { localTimeoutMs?: number }, on?: Conn): { id: string; promise: Promise<unknown> } {
    const id = String(++this.nextId);
    const cn = on ?? this.cur;
    if (!cn || cn.ended) {
      const err = this.closing || this.finished ? new ClosedError() : !this.started ? new Error('junction: not connected: call connect first') : notConnected();
      return { id, promise: Promise.reject(err) };
    }
    if (opts.signal?.aborted) return { id, promise: Promise.reject(opts.signal.reason) };
    const frame: Frame = { type: 'req', id, method };
    if (params !== undefined && params !== null) frame.params = params;
    if (opts.idem) frame.idem = opts.idem;
    const text = JSON.stringify(frame);
    if (utf8Length(text) > cn.maxFrame) {
      return { id, promise: Promise.reject(new JunctionError({ code: 'too_large', message: `request of ${utf8Length(text)} bytes is over the server's limit of ${cn.maxFrame}` })) };
    }
    const timeoutMs = opts.localTimeoutMs ?? opts.timeoutMs ?? this.opts.callTimeoutMs;
    const promise = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        p.cleanup();
        reject(new JunctionError({ code: 'timeout', message: `${method}: no answer within ${timeoutMs} ms`, retryable: true }));
      }, timeoutMs);
      const onAbort = () => {
        p.cleanup();
        reject(opts.signal!.reason);
      };
      const p: Pending = {
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          cn.pending.delete(id);
        },
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      cn.pending.set(id, p);
    });
    this.sendText(cn, text);
    return { id, promise };
  }

  /**
   * sendEvent sends an event frame on the current connection (rpc.progress,
   * for example). It throws a JunctionError (unavailable) without one.
   */
  sendEvent(event: string, data: unknown): void {
    const cn = this.cur;
    if (!cn || cn.ended) throw this.closing || this.finished ? new ClosedError() : notConnected();
    const text = JSON.stringify({ type: 'event', event, data });
    if (utf8Length(text) > cn.maxFrame) throw new JunctionError({ code: 'too_large', message: `event of ${utf8Length(text)} bytes is over the server's limit of ${cn.maxFrame}` });
    this.sendText(cn, text);
  }

  // ---- channels (docs/channels.md) ----------------------------------------

  /**
   * subscribe subscribes to topic and calls handler for each publication, in
   * offset order, exactly once per offset. After every reconnect the
   * subscription is renewed from the last delivered position: the server
   * replays what was missed (or says recovered: false, see onSubscribed).
   */
  subscribe<T = unknown>(topic: string, handler: (p: Publication<T>) => void, opts?: SubscribeOptions): Promise<Subscription<T>> {
    return subscribe(this, topic, handler, opts);
  }

  /** publish publishes data (any JSON) to topic and returns the publication's position. */
  publish(topic: string, data: unknown, opts?: { idem?: string; signal?: AbortSignal }): Promise<{ epoch: string; offset: number }> {
    return publish(this, topic, data, opts);
  }

  /** presence lists the clients present on topic. */
  presence(topic: string): Promise<PresenceResult> {
    return presence(this, topic);
  }

  /** history returns topic's publications after since (or the latest), at most limit. */
  history(topic: string, opts?: { since?: { epoch: string; offset: number }; limit?: number }): Promise<HistoryResult> {
    return history(this, topic, opts);
  }

  // ---- RPC (docs/rpc.md) ----------------------------------------------------

  /** serve serves method for callers relayed by the gateway; registered now when connected and after every reconnect. */
  serve<P = any>(method: string, handler: RPCHandler<P>): Promise<void> {
    return serve(this, method, handler);
  }

  /** callDevice calls method on device deviceId through the gateway, with progress and cancel (signal). */
  callDevice<R = unknown>(deviceId: string, method: string, params?: object, opts?: CallDeviceOptions): Promise<R> {
    return callDevice<R>(this, deviceId, method, params, opts);
  }

  /** rpcList lists the methods device deviceId serves. */
  rpcList(deviceId: string): Promise<RPCListResult> {
    return rpcList(this, deviceId);
  }

  // ---- encrypted data (docs/api.md); seal values with crypto.seal first ----

  /** createSession creates a session with sealed metadata and agent state; idem makes it safe to repeat. */
  createSession(metadata?: Uint8Array, agentState?: Uint8Array, opts: CallOptions = {}): Promise<Session> {
    const p: { metadata?: string; agentState?: string } = {};
    if (metadata) p.metadata = toBase64(metadata);
    if (agentState) p.agentState = toBase64(agentState);
    return this.call('session.create', p, opts);
  }

  /** session returns a session. */
  session(id: string, opts: CallOptions = {}): Promise<Session> {
    return this.call('session.get', { id }, opts);
  }

  /**
   * updateSession replaces field ("metadata" or "agentState") if its version
   * is expectedVersion; otherwise it rejects with code conflict whose details
   * hold currentVersion and value (base64).
   */
  updateSession(id: string, field: 'metadata' | 'agentState', value: Uint8Array, expectedVersion: number, opts: CallOptions = {}): Promise<Session> {
    return this.call('session.update', { id, field, value: toBase64(value), expectedVersion }, opts);
  }

  /** appendMessages appends up to 100 messages in one transaction; a localId already stored comes back as stored. */
  async appendMessages(sessionId: string, messages: { localId?: string; body: Uint8Array }[], opts: CallOptions = {}): Promise<Message[]> {
    const res: MessageList = await this.call('message.append', { sessionId, messages: messages.map((m) => (m.localId ? { localId: m.localId, body: toBase64(m.body) } : { body: toBase64(m.body) })) }, opts);
    return res.items ?? [];
  }

  /** messages pages a session's messages (afterSeq: oldest first; beforeSeq: newest first). */
  async messages(sessionId: string, page: { afterSeq?: number; beforeSeq?: number; limit?: number } = {}, opts: CallOptions = {}): Promise<Message[]> {
    const res: MessageList = await this.call('message.list', { sessionId, ...page }, opts);
    return res.items ?? [];
  }

  /** updatesSince returns the account's updates after seq since (or reset: true). */
  updatesSince(since: number, limit?: number, opts: CallOptions = {}): Promise<Updates> {
    return this.call('update.since', limit ? { since, limit } : { since }, opts);
  }

  // ---- connection ---------------------------------------------------------

  private async token(req: TokenRequest): Promise<string | undefined> {
    if (this.opts.tokenProvider) return await this.opts.tokenProvider(req);
    return this.opts.token;
  }

  /** dial opens one connection and waits for its welcome. */
  private async dial(signal?: AbortSignal): Promise<Conn> {
    let token: string | undefined;
    try {
      token = await this.token({ reason: 'connect' });
    } catch (err) {
      throw new Error(`junction: get token: ${String(err)}`, { cause: err });
    }
    if (this.closing) throw new ClosedError();
    const protocols = [SUBPROTOCOL];
    if (token) protocols.push(BEARER_PREFIX + token);
    const ws = this.opts.headers ? new this.WS(this.opts.url, protocols, { headers: this.opts.headers }) : new this.WS(this.opts.url, protocols);
    const cn = new Conn(ws);
    const welcomed = new Promise<void>((resolve, reject) => {
      cn.waiter = { resolve, reject };
    });
    const timer = setTimeout(() => this.endConn(cn, 0, 'handshake timeout', false, new Error(`junction: no welcome within ${this.opts.handshakeTimeoutMs} ms`)), this.opts.handshakeTimeoutMs);
    const onAbort = () => this.endConn(cn, 0, 'connect aborted', false, signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.dialing = cn;
    ws.onmessage = (ev) => this.onMessage(cn, ev.data);
    ws.onclose = (ev) => this.endConn(cn, ev.code, ev.reason ?? '', false);
    ws.onerror = () => {}; // onclose follows
    if (hasNodeExtras(ws)) {
      ws.on('ping', () => this.armWatchdog(cn));
      ws.on('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (c: Uint8Array) => {
          if (body.length < 65536) body += typeof c === 'string' ? c : new TextDecoder().decode(c);
        });
        const done = () => {
          let err: JunctionError | undefined;
          try {
            const env = JSON.parse(body) as { error?: ErrorObject };
            if (env.error?.code) err = fromWire(env.error);
          } catch {}
          const ra = Number(res.headers['retry-after']);
          const retryAfterMs = err?.retryAfterMs ?? (Number.isFinite(ra) && ra > 0 ? ra * 1000 : undefined);
          cn.handshakeError = new HandshakeError(res.statusCode ?? 0, err, retryAfterMs);
          req.destroy(cn.handshakeError);
          this.endConn(cn, 0, 'handshake refused', false, cn.handshakeError);
        };
        res.on('end', done);
        res.on('error', done);
      });
    }
    try {
      await welcomed;
    } finally {
      clearTimeout(timer);
      if (this.dialing === cn) this.dialing = undefined;
      signal?.removeEventListener('abort', onAbort);
      cn.waiter = undefined;
    }
    return cn;
  }

  private async connected(cn: Conn, reconnected: boolean): Promise<void> {
    this.cur = cn;
    if (cn.ended) {
      // It ended between its welcome and now: handle that end like any other.
      this.cur = undefined;
      void this.supervise(cn, new Error('junction: connection ended'));
      return;
    }
    this.last = cn.welcome;
    this.setState('connected');
    for (const fn of [...this.hooks]) {
      try {
        await fn(reconnected, cn.life.signal);
      } catch (err) {
        this.log.warn('junction: onConnect hook failed', err);
      }
    }
  }

  private onMessage(cn: Conn, data: unknown): void {
    if (cn.ended) return;
    if (typeof data !== 'string') {
      this.log.warn('junction: ignoring a binary message');
      return;
    }
    this.armWatchdog(cn);
    for (const line of data.split('\n')) {
      if (!line) continue;
      this.opts.onFrame?.(false, line);
      let f: Frame;
      try {
        f = JSON.parse(line) as Frame;
      } catch (err) {
        this.log.warn('junction: dropping an invalid frame', err);
        continue;
      }
      if (!f || typeof f !== 'object') continue;
      this.handleFrame(cn, f);
      if (cn.ended) return;
    }
  }

  private handleFrame(cn: Conn, f: Frame): void {
    if (!cn.welcome) {
      if (f.type !== 'event' || f.event !== 'welcome') {
        this.endConn(cn, 1002, 'protocol error', true, new Error('junction: first frame is not the welcome event'));
        return;
      }
      cn.welcome = f.data as Welcome;
      cn.connectedAt = Date.now();
      cn.waiter?.resolve();
      this.armWatchdog(cn);
      this.deliver(f);
      return;
    }
    switch (f.type) {
      case 'res': {
        const p = cn.pending.get(f.id ?? '');
        if (!p) {
          this.log.debug('junction: dropping a response nobody waits for', f.id);
          return;
        }
        p.cleanup();
        if (f.ok) p.resolve(f.result);
        else p.reject(fromWire(f.error));
        return;
      }
      case 'req':
        this.serveRequest(cn, f);
        return;
      case 'event':
        if (f.event === 'server.shutdown') {
          const d = (f.data ?? {}) as { reconnectAfterMs?: number };
          cn.shutdownAfterMs = typeof d.reconnectAfterMs === 'number' ? d.reconnectAfterMs : 0;
        } else if (f.event === 'token.expiring') {
          void this.refreshToken(cn, (f.data as { expiresAtMs?: number } | undefined)?.expiresAtMs);
        }
        this.deliver(f);
    }
  }

  private deliver(f: Frame): void {
    const fns = [...(this.handlers.get(f.event ?? '') ?? []), ...(this.handlers.get('*') ?? [])];
    for (const fn of fns) {
      try {
        fn(f.data, f);
      } catch (err) {
        this.log.warn(`junction: handler of ${f.event} threw`, err);
      }
    }
  }

  /** serve runs the handler of a request the server sent, within maxHandlers. */
  private serveRequest(cn: Conn, f: Frame): void {
    const id = f.id ?? '';
    const fn = this.methods.get(f.method ?? '');
    if (!fn) {
      this.reply(cn, id, undefined, new JunctionError({ code: 'unknown_method', message: `unknown method ${JSON.stringify(f.method)}` }));
      return;
    }
    if (this.serving >= this.opts.maxHandlers) {
      this.reply(cn, id, undefined, new JunctionError({ code: 'rate_limited', message: 'too many requests in flight', retryable: true, retryAfterMs: 100 }));
      return;
    }
    this.serving++;
    const ac = new AbortController();
    cn.inflight.set(id, ac);
    const onEnd = () => ac.abort(cn.life.signal.reason);
    cn.life.signal.addEventListener('abort', onEnd, { once: true });
    Promise.resolve()
      .then(() => fn(f, ac.signal))
      .then(
        (res) => this.reply(cn, id, res, undefined),
        (err) => this.reply(cn, id, undefined, err),
      )
      .finally(() => {
        this.serving--;
        cn.inflight.delete(id);
        cn.life.signal.removeEventListener('abort', onEnd);
      });
  }

  /** @internal the client's logger. */
  get logger(): Logger {
    return this.log;
  }

  /** @internal abortServed aborts the handler of the relayed request id (rpc.cancel). */
  abortServed(id: string, reason: unknown): void {
    this.cur?.inflight.get(id)?.abort(reason);
  }

  private reply(cn: Conn, id: string, res: unknown, err: unknown): void {
    if (cn.ended) return;
    let text: string | undefined;
    if (err === undefined) {
      text = JSON.stringify({ type: 'res', id, ok: true, result: res === undefined ? null : res });
      if (utf8Length(text) > cn.maxFrame) {
        err = new JunctionError({ code: 'too_large', message: `result of ${utf8Length(text)} bytes is over the server's limit of ${cn.maxFrame}` });
        text = undefined;
      }
    }
    if (text === undefined) {
      let je: JunctionError;
      if (err instanceof JunctionError) je = err;
      else {
        this.log.warn('junction: method handler failed', err);
        je = new JunctionError({ code: 'internal', message: 'internal error', retryable: true });
      }
      text = JSON.stringify({ type: 'res', id, ok: false, error: je.toJSON() });
    }
    this.sendText(cn, text);
  }

  /** sendText queues one encoded frame; with feature batch, frames queued in one task go in one message. */
  private sendText(cn: Conn, text: string): void {
    if (cn.ended) return;
    this.opts.onFrame?.(true, text);
    if (!cn.batch) {
      this.write(cn, text);
      return;
    }
    cn.outbox.push(text);
    if (cn.flushing) return;
    cn.flushing = true;
    queueMicrotask(() => {
      cn.flushing = false;
      const limit = cn.maxFrame;
      let msg = '';
      let size = 0;
      for (const t of cn.outbox) {
        const n = utf8Length(t);
        if (msg && size + 1 + n > limit) {
          this.write(cn, msg);
          msg = '';
          size = 0;
        }
        msg = msg ? msg + '\n' + t : t;
        size += msg === t ? n : 1 + n;
      }
      cn.outbox = [];
      if (msg) this.write(cn, msg);
    });
  }

  private write(cn: Conn, text: string): void {
    if (cn.ended) return;
    try {
      cn.ws.send(text);
    } catch (err) {
      this.endConn(cn, 0, 'write failed', false, err);
    }
  }

  /**
   * armWatchdog restarts the liveness timers: after heartbeatMs without a
   * frame (or, with `ws`, a ping) the client sends sys.ping (browsers do not
   * see the server's pings); without any frame within heartbeatTimeoutMs
   * more the server is gone and the connection is dropped.
   */
  private armWatchdog(cn: Conn): void {
    cn.lastRx = Date.now();
    if (cn.deadTimer !== undefined) {
      clearTimeout(cn.deadTimer);
      cn.deadTimer = undefined;
    }
    const hb = cn.welcome?.heartbeatMs ?? 0;
    if (cn.ended || hb <= 0 || cn.idleTimer !== undefined) return;
    const grace = cn.welcome?.heartbeatTimeoutMs || hb;
    // One timer per connection, not one per frame: it fires hb after the
    // frame that armed it and re-arms itself for what is left when frames
    // came meanwhile.
    const check = () => {
      cn.idleTimer = undefined;
      if (cn.ended) return;
      const idle = Date.now() - cn.lastRx;
      if (idle < hb) {
        cn.idleTimer = setTimeout(check, hb - idle);
        return;
      }
      this.request('sys.ping', undefined, { timeoutMs: grace + hb }, cn).promise.catch(() => {});
      cn.deadTimer = setTimeout(() => this.endConn(cn, 0, 'server silent', true, new Error(`junction: server silent for ${hb + grace} ms`)), grace);
      cn.idleTimer = setTimeout(check, hb);
    };
    cn.idleTimer = setTimeout(check, hb);
  }

  /**
   * endConn ends cn (idempotent): code is the server's close code (0 when
   * there was no close frame); sendClose closes the socket from our side.
   */
  private endConn(cn: Conn, code: number, reason: string, sendClose: boolean, cause?: unknown): void {
    if (cn.ended) return;
    cn.ended = true;
    cn.closeCode = code === 1005 || code === 1006 ? 0 : code;
    cn.closeReason = reason;
    clearTimeout(cn.idleTimer);
    clearTimeout(cn.deadTimer);
    const err = cause ?? (cn.closeCode ? new CloseError(cn.closeCode, reason) : new Error(`junction: connection ended (${code || 'no close frame'}${reason ? ' ' + reason : ''})`));
    cn.life.abort(err);
    const callErr = this.closing ? new ClosedError() : connectionLost();
    for (const p of [...cn.pending.values()]) {
      p.cleanup();
      p.reject(callErr);
    }
    cn.ws.onmessage = null;
    cn.ws.onclose = null;
    try {
      if (sendClose || cn.ws.readyState <= 1) {
        if (this.closing) cn.ws.close(1000, 'normal closure');
        else if (cn.closeCode === 0 && hasNodeExtras(cn.ws) && cn.ws.terminate) cn.ws.terminate();
        else cn.ws.close(1000, 'normal closure');
      }
    } catch {}
    if (cn.waiter) {
      cn.waiter.reject(err);
      return;
    }
    if (this.cur === cn) {
      this.cur = undefined;
      void this.supervise(cn, err);
    }
  }

  /** supervise reconnects after cn ended, or closes the client. */
  private attempt = 0;
  private async supervise(cn: Conn, err: unknown): Promise<void> {
    if (this.closing) {
      this.finish(undefined);
      return;
    }
    this._closeCode = cn.closeCode;
    this.setState('disconnected', err);
    if (!this.opts.reconnect || !this.advised(cn)) {
      this.finish(err);
      return;
    }
    if (Date.now() - cn.connectedAt >= Math.min(this.opts.maxBackoffMs, 10_000)) this.attempt = 0;
    let delay: number;
    if (cn.shutdownAfterMs !== undefined && cn.shutdownAfterMs > 0) {
      delay = shutdownDelay(cn.shutdownAfterMs, this.opts.minBackoffMs);
    } else {
      delay = this.backoff(disconnectFor(cn.closeCode).reconnect === 'later' ? this.attempt + 2 : this.attempt);
      this.attempt++;
    }
    for (;;) {
      if (!(await this.sleep(delay))) {
        this.finish(undefined);
        return;
      }
      this.setState('connecting');
      try {
        const next = await this.dial();
        await this.connected(next, true);
        return;
      } catch (e) {
        if (this.closing) {
          this.finish(undefined);
          return;
        }
        this.setState('disconnected', e);
        if (this.terminal(e)) {
          this.finish(e);
          return;
        }
        delay = this.backoff(this.attempt++);
        if (e instanceof HandshakeError && e.retryAfterMs) delay = Math.max(delay, e.retryAfterMs);
      }
    }
  }

  /**
   * advised: no close frame, or a code whose advice is to reconnect (after
   * server.shutdown, any non-terminal code). 4001 (token expired) advises
   * reconnecting only with a new token: with a tokenProvider, which gives
   * one, the client reconnects.
   */
  private advised(cn: Conn): boolean {
    if (cn.closeCode === 0) return true;
    if (disconnectFor(cn.closeCode).reconnect === 'new-token') return this.opts.tokenProvider !== undefined;
    if (isTerminal(cn.closeCode)) return false;
    if (cn.shutdownAfterMs !== undefined) return true;
    return reconnectAdvised(cn.closeCode);
  }

  /** terminal: the server refused the credential and there is no provider to get another. */
  private terminal(err: unknown): boolean {
    return err instanceof HandshakeError && !this.opts.tokenProvider && (err.status === 401 || err.status === 403);
  }

  private backoff(n: number): number {
    return backoffDelay(n, this.opts.minBackoffMs, this.opts.maxBackoffMs);
  }

  private sleep(ms: number): Promise<boolean> {
    if (this.closing) return Promise.resolve(false);
    return new Promise((resolve) => {
      const s = {
        timer: setTimeout(() => {
          this.sleeper = undefined;
          resolve(true);
        }, ms),
        wake: () => {
          clearTimeout(s.timer);
          this.sleeper = undefined;
          resolve(false);
        },
      };
      this.sleeper = s;
    });
  }

  private finish(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.cur = undefined;
    this.setState('closed', err);
    for (const w of this.doneWaiters.splice(0)) w();
  }

  private setState(s: State, err?: unknown): void {
    this._state = s;
    try {
      this.opts.onState?.(s, err);
    } catch (e) {
      this.log.warn('junction: onState threw', e);
    }
  }

  /** refreshToken answers token.expiring: a fresh token from the provider, sent in-band with auth.refresh. */
  private async refreshToken(cn: Conn, expiresAtMs: number | undefined): Promise<void> {
    if (!this.opts.tokenProvider) {
      this.log.debug('junction: token expiring and no tokenProvider to refresh it');
      return;
    }
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const req: TokenRequest = { reason: 'expiring' };
      if (expiresAtMs !== undefined) req.expiresAtMs = expiresAtMs;
      const token = await this.opts.tokenProvider(req);
      await this.request('auth.refresh', { token }, {}, cn).promise;
    } catch (err) {
      if (err instanceof JunctionError && err.code === 'unknown_method') this.log.debug('junction: server does not support auth.refresh');
      else this.log.warn('junction: refresh token', err);
    } finally {
      this.refreshing = false;
    }
  }
}
