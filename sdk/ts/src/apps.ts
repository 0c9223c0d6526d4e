// The SDK for app backends (docs/apps.md), the twin of the Go package
// appsdk: verify Junction's signed webhooks, accept session.start and
// connect the session with the app's API key and its ticket, say
// apps.hello, keep the resume token and reattach with it after a lost
// connection or a restart, end on app.stopped / close 1000, list and stop
// sessions over REST. App backends run in Node (≥ 20): the session
// connections send the Junction-Ticket / Junction-Resume headers, which
// needs a WebSocket implementation that takes headers, such as the `ws`
// package's.
import { Client, DEFAULTS, type CallOptions, type ClientOptions, type Frame, type Logger } from './client.js';
import { backoffDelay, reconnectAdvised } from './disconnect.js';
import { CloseError, HandshakeError, JunctionError } from './errors.js';
import type { AppHello, AppSession as AppSessionInfo, AppSessionList, AppSessionStopped, AppStopped, Methods } from './gen/protocol.js';
import { restCall } from './rest.js';
import type { WebSocketConstructor } from './socket.js';
import { WebhookError, WebhookVerifier, type HeadersLike } from './webhook.js';

export { WebhookError, WebhookVerifier, parseSecret, signWebhook } from './webhook.js';
export type { HeadersLike, VerifierOptions, WebhookErrorReason, WebhookMessage } from './webhook.js';

/** The upgrade header carrying a session's single-use start ticket. */
export const HEADER_APP_TICKET = 'Junction-Ticket';
/** The upgrade header carrying a session's resume token. */
export const HEADER_APP_RESUME = 'Junction-Resume';
export const WEBHOOK_SESSION_START = 'session.start';
export const WEBHOOK_SESSION_STOP = 'session.stop';

/** How long a session.stop webhook lets Junction's own close (app.stopped, then 1000) end the session's connection before the handle is ended. */
const STOP_CLOSE_GRACE_MS = 2000;

export const DEFAULT_MAX_WEBHOOK_BYTES = 1 << 20;
export const DEFAULT_DEDUPE = 4096;
export const DEFAULT_REATTACH_FOR_MS = 5 * 60_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 60_000;

/** The body of the session.start webhook (protocol.AppSessionStartHook). */
export interface SessionStartHook {
  type: 'session.start';
  sessionId: string;
  appId: string;
  /** the app's pseudonymous id of the user */
  userId: string;
  deviceKind?: string;
  capabilities: string[];
  /** dial it with the API key and Junction-Ticket: ticket */
  websocketUrl: string;
  /** single use */
  ticket: string;
  /** RFC 3339 */
  ticketExpiresAt: string;
  resumed: boolean;
}

/** The body of the session.stop webhook (protocol.AppSessionStopHook). */
export interface SessionStopHook {
  type: 'session.stop';
  sessionId: string;
  appId: string;
  userId: string;
  reason: string;
  stage?: string;
}

/** A verified webhook, as onWebhook's handlers get it. */
export interface Webhook {
  /** webhook-id: every retry of one delivery carries the same */
  id: string;
  type: string;
  timestampMs: number;
  /** the body, parsed */
  body: Record<string, unknown>;
}

/** A webhook handler answers an HTTP status (default 200); a non-2xx lets Junction's retry of the same delivery through. */
export type WebhookHandler = (hook: Webhook) => number | void | Promise<number | void>;

/** An event handler of a session's connection. */
export type SessionEventHandler = (session: AppSession, data: unknown, frame: Frame) => void;

/** What reattaching a session takes: its latest resume token and the WebSocket URL it was connected to. */
export interface ResumeRecord {
  sessionId: string;
  /** jr_…: a credential; store it like one */
  token: string;
  /** the websocketUrl of the session's start; empty: AppOptions.url's /ws */
  url: string;
  userId?: string;
}

/**
 * ResumeStore keeps the resume tokens of an App's sessions, so that a later
 * run of the backend (or another instance sharing the store) reattaches
 * them. The App saves a session's record after each hello (each hello
 * supersedes the previous token) and deletes it when the session stops.
 * Back it with the app's own database to survive restarts.
 */
export interface ResumeStore {
  /** save records r, replacing the session's earlier record. */
  save(r: ResumeRecord): Promise<void> | void;
  /** load returns the record of session id, or undefined. */
  load(id: string): Promise<ResumeRecord | undefined> | ResumeRecord | undefined;
  /** delete removes the record of session id if its token is token (a record saved since by another instance stays). */
  delete(id: string, token: string): Promise<void> | void;
}

/** MemoryResumeStore is a ResumeStore in memory: it survives a session's transport losses, not the process. */
export class MemoryResumeStore implements ResumeStore {
  private readonly m = new Map<string, ResumeRecord>();
  save(r: ResumeRecord): void {
    this.m.set(r.sessionId, { ...r });
  }
  load(id: string): ResumeRecord | undefined {
    const r = this.m.get(id);
    return r && { ...r };
  }
  delete(id: string, token: string): void {
    if (this.m.get(id)?.token === token) this.m.delete(id);
  }
  /** The number of records held. */
  get size(): number {
    return this.m.size;
  }
}

/**
 * StoppedError ends a session that stopped on Junction: app.stopped then
 * close 1000, the session.stop webhook, AppSession.stop, or an attach
 * refused with 409. A stopped session never comes back.
 */
export class StoppedError extends Error {
  constructor(
    /** the stop reason (user_stopped, app_error, …); empty when Junction did not say */
    readonly reason: string,
    cause?: unknown,
  ) {
    super(reason ? `junction apps: session stopped: ${reason}` : 'junction apps: session stopped', cause === undefined ? undefined : { cause });
    this.name = 'StoppedError';
  }
}

/** DetachedError ends a handle that was closed (AppSession.close, App.close, a newer handle): the session runs on and can be reattached. */
export class DetachedError extends Error {
  constructor() {
    super('junction apps: session detached');
    this.name = 'DetachedError';
  }
}

/** SupersededError ends a session whose connection was closed with 4009: another connection reattached to it. */
export class SupersededError extends Error {
  constructor() {
    super('junction apps: another connection reattached to the session (4009)');
    this.name = 'SupersededError';
  }
}

/** NoResumeTokenError: the ResumeStore holds no token for the session. */
export class NoResumeTokenError extends Error {
  constructor(id: string) {
    super(`junction apps: no resume token stored for session ${id}`);
    this.name = 'NoResumeTokenError';
  }
}

/** AppClosedError is thrown by an App's methods after close (its webhook handler answers 503). */
export class AppClosedError extends Error {
  constructor() {
    super('junction apps: app closed');
    this.name = 'AppClosedError';
  }
}

export interface AppOptions {
  /** The app's id (com.example.captions). */
  appId: string;
  /** One of the app's API keys, jk_…: the credential of every session connection and REST request. */
  apiKey: string;
  /** The webhook secrets (whsec_…; during a rotation the new and the old one). */
  webhookSecrets: string[];
  /**
   * The base URL of Junction's HTTP API (http://127.0.0.1:7700), for
   * sessions(), reattach() and stop over REST. Sessions started by webhook
   * connect to the webhook's websocketUrl without it.
   */
  url?: string;
  /** Keeps the resume tokens; default a MemoryResumeStore. */
  resume?: ResumeStore;
  /** The WebSocket implementation: one that takes headers, such as the `ws` package's WebSocket. */
  WebSocket: WebSocketConstructor;
  /** Runs for each session once its first hello is answered; signal aborts when the handle ends. App.close waits for it to settle. */
  onSession?: (session: AppSession, signal: AbortSignal) => void | Promise<void>;
  /** Runs for each verified session.stop webhook (also for sessions this App does not hold), before it is answered. */
  onStop?: (stop: SessionStopHook) => void | Promise<void>;
  /** Template of each session connection (timeouts, backoff bounds, logger); the SDK sets url, token, headers, reconnect and WebSocket. */
  client?: Omit<ClientOptions, 'url' | 'token' | 'tokenProvider' | 'headers' | 'reconnect' | 'WebSocket'>;
  /** How long a session whose connection was lost keeps trying to reattach; default 5 minutes. */
  reattachForMs?: number;
  /** Bounds a session's first connection and hello when the ticket does not expire sooner; default 1 minute. */
  connectTimeoutMs?: number;
  /** Bounds a webhook's body; default 1 MiB. */
  maxWebhookBytes?: number;
  /** How many recent webhook-ids are remembered for deduplication; default 4096. */
  dedupe?: number;
  /** The fetch of REST requests; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** The webhook verifier's clock (ms); default Date.now. */
  now?: () => number;
  logger?: Logger;
}

/** A framework-neutral webhook request: the body exactly as received. */
export interface WebhookRequest {
  method: string;
  headers: HeadersLike;
  body: Uint8Array | string;
}

/** The answer to a webhook. */
export interface WebhookResponse {
  status: number;
  body: string;
}

/** The parts of node:http's IncomingMessage the Node adapter uses. */
export interface NodeRequestLike {
  method?: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  on(event: 'data', fn: (chunk: Uint8Array) => void): unknown;
  on(event: 'end', fn: () => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  resume?(): unknown;
}

/** The parts of node:http's ServerResponse the Node adapter uses. */
export interface NodeResponseLike {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body?: string): unknown;
}

const silent: Logger = { warn: () => {}, debug: () => {} };

/**
 * App is one app's backend: the webhook handler and the sessions it holds.
 *
 *   const app = new App({ appId, apiKey, webhookSecrets: [secret], url, WebSocket });
 *   http.createServer(app.nodeHandler()).listen(8081);
 */
export class App {
  readonly appId: string;
  /** @internal */
  readonly opts: Required<Pick<AppOptions, 'reattachForMs' | 'connectTimeoutMs' | 'maxWebhookBytes' | 'dedupe'>> & AppOptions & { resume: ResumeStore };
  /** @internal */
  readonly log: Logger;
  private readonly verifier: WebhookVerifier;
  private readonly seen = new Map<string, true>();
  private readonly live = new Map<string, AppSession>();
  private readonly events = new Map<string, SessionEventHandler[]>();
  private readonly hooks = new Map<string, WebhookHandler>();
  private readonly tasks = new Set<Promise<unknown>>();
  private closed = false;

  constructor(opts: AppOptions) {
    if (!opts.appId) throw new TypeError('junction apps: no appId');
    if (!opts.apiKey?.startsWith('jk_')) throw new TypeError('junction apps: apiKey is not an API key (jk_…)');
    if (!opts.WebSocket) throw new TypeError('junction apps: no WebSocket implementation (pass the ws package\'s WebSocket)');
    this.verifier = new WebhookVerifier({ secrets: opts.webhookSecrets, ...(opts.now ? { now: opts.now } : {}) });
    if (opts.url !== undefined) {
      let u: URL | undefined;
      try {
        u = new URL(opts.url);
      } catch {}
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new TypeError(`junction apps: url ${JSON.stringify(opts.url)} is not an http(s) base URL`);
    }
    const pos = (v: number | undefined, d: number) => (v && v > 0 ? v : d);
    this.opts = {
      ...opts,
      ...(opts.url !== undefined ? { url: opts.url.replace(/\/+$/, '') } : {}),
      resume: opts.resume ?? new MemoryResumeStore(),
      reattachForMs: pos(opts.reattachForMs, DEFAULT_REATTACH_FOR_MS),
      connectTimeoutMs: pos(opts.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
      maxWebhookBytes: pos(opts.maxWebhookBytes, DEFAULT_MAX_WEBHOOK_BYTES),
      dedupe: pos(opts.dedupe, DEFAULT_DEDUPE),
    };
    this.appId = opts.appId;
    this.log = opts.logger ?? silent;
  }

  /**
   * handle answers one webhook request:
   *
   *   405 not a POST · 401 signature, timestamp or webhook-id missing or wrong ·
   *   413 a body over maxWebhookBytes · 400 not a JSON object with a type, or a
   *   session.start for another app or without its ticket · 503 the App is
   *   closed · 202 session.start accepted (the session connects in the
   *   background) · 200 session.stop handled, a duplicate webhook-id, a type
   *   nobody handles.
   *
   * Junction retries 429 and 5xx only, so a refusal ends the delivery.
   */
  async handle(req: WebhookRequest): Promise<WebhookResponse> {
    if (req.method.toUpperCase() !== 'POST') return { status: 405, body: 'method not allowed' };
    const size = typeof req.body === 'string' ? new TextEncoder().encode(req.body).length : req.body.length;
    if (size > this.opts.maxWebhookBytes) return { status: 413, body: 'body too large' };
    let msg;
    try {
      msg = this.verifier.verify(req.headers, req.body);
    } catch (err) {
      this.log.debug('junction apps: webhook refused', err);
      return { status: 401, body: 'webhook not verified' };
    }
    let body: Record<string, unknown>;
    try {
      const text = typeof req.body === 'string' ? req.body : new TextDecoder('utf-8', { fatal: true }).decode(req.body);
      body = JSON.parse(text) as Record<string, unknown>;
      if (!body || typeof body !== 'object' || Array.isArray(body) || typeof body.type !== 'string' || !body.type) throw new Error('no type');
    } catch {
      return { status: 400, body: 'body is not a JSON object with a type' };
    }
    if (this.seen.has(msg.id)) return { status: 200, body: '' };
    this.remember(msg.id);
    const res = await this.dispatchWebhook({ id: msg.id, type: body.type as string, timestampMs: msg.timestampMs, body });
    if (res.status < 200 || res.status > 299) this.seen.delete(msg.id); // not handled: let Junction's retry through
    return res;
  }

  /** nodeHandler returns a node:http request listener serving the webhook URL (mount it on its path). */
  nodeHandler(): (req: NodeRequestLike, res: NodeResponseLike) => void {
    return (req, res) => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      let over = false;
      const answer = (r: WebhookResponse) => {
        res.statusCode = r.status;
        if (r.status === 405) res.setHeader('allow', 'POST');
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.end(r.body);
      };
      req.on('data', (c) => {
        size += c.length;
        if (size > this.opts.maxWebhookBytes) over = true;
        else chunks.push(c);
      });
      req.on('error', () => answer({ status: 400, body: 'request failed' }));
      req.on('end', () => {
        if (over) return answer({ status: 413, body: 'body too large' });
        const body = new Uint8Array(size);
        let off = 0;
        for (const c of chunks) {
          body.set(c, off);
          off += c.length;
        }
        this.handle({ method: req.method ?? 'GET', headers: req.headers, body }).then(answer, (err) => {
          this.log.warn('junction apps: webhook handler failed', err);
          answer({ status: 500, body: 'internal error' });
        });
      });
    };
  }

  private remember(id: string): void {
    this.seen.set(id, true);
    if (this.seen.size > this.opts.dedupe) this.seen.delete(this.seen.keys().next().value as string);
  }

  private async dispatchWebhook(hook: Webhook): Promise<WebhookResponse> {
    switch (hook.type) {
      case WEBHOOK_SESSION_START:
        return this.serveStart(hook.body as unknown as SessionStartHook);
      case WEBHOOK_SESSION_STOP:
        return this.serveStop(hook.body as unknown as SessionStopHook);
    }
    const fn = this.hooks.get(hook.type);
    if (!fn) {
      this.log.debug('junction apps: webhook type without a handler; ignored', hook.type);
      return { status: 200, body: '' };
    }
    const status = (await fn(hook)) ?? 200;
    return { status, body: '' };
  }

  private serveStart(start: SessionStartHook): WebhookResponse {
    const bad = this.checkStart(start);
    if (bad) return { status: 400, body: bad };
    if (this.closed) return { status: 503, body: 'closed' };
    this.launch(start.sessionId, start.userId, start.websocketUrl, start.ticket, this.startDeadline(start));
    return { status: 202, body: '' };
  }

  private async serveStop(stop: SessionStopHook): Promise<WebhookResponse> {
    if (typeof stop.sessionId !== 'string' || !stop.sessionId) return { status: 400, body: 'session.stop without a sessionId' };
    const s = this.live.get(stop.sessionId);
    if (s) {
      // Junction sends the session's connection app.stopped and closes it
      // with 1000 on its own; the webhook may come first. Give that close a
      // moment, so that app.stopped handlers run, then end the handle.
      s.markStopped(stop.reason ?? '');
      const t = setTimeout(() => s.detach(), STOP_CLOSE_GRACE_MS);
      (t as { unref?: () => void }).unref?.();
    } else {
      const rec = await this.opts.resume.load(stop.sessionId);
      if (rec) await this.opts.resume.delete(stop.sessionId, rec.token);
    }
    await this.opts.onStop?.(stop);
    return { status: 200, body: '' };
  }

  private checkStart(h: SessionStartHook): string | undefined {
    if (h.appId !== this.appId) return `session.start for app ${JSON.stringify(h.appId)}, this is ${JSON.stringify(this.appId)}`;
    if (!h.sessionId || !h.ticket || !h.websocketUrl) return 'session.start without sessionId, ticket or websocketUrl';
    return undefined;
  }

  private startDeadline(h: SessionStartHook): number {
    const d = Date.now() + this.opts.connectTimeoutMs;
    const exp = Date.parse(h.ticketExpiresAt ?? '');
    return Number.isFinite(exp) && exp < d ? exp : d;
  }

  /** on registers fn for the events named event ("*": all) on every session's connection; App handlers run before the session's own. */
  on(event: string, fn: SessionEventHandler): void {
    const l = this.events.get(event) ?? [];
    l.push(fn);
    this.events.set(event, l);
  }

  /** onWebhook registers fn for the webhooks of type typ; session.start and session.stop are the SDK's own. */
  onWebhook(typ: string, fn: WebhookHandler): void {
    if (typ === WEBHOOK_SESSION_START || typ === WEBHOOK_SESSION_STOP) throw new TypeError(`junction apps: onWebhook: ${typ} is handled by the SDK`);
    if (this.hooks.has(typ)) throw new TypeError(`junction apps: onWebhook: ${typ} registered twice`);
    this.hooks.set(typ, fn);
  }

  /** @internal the App's and then s's handlers of event. */
  handlers(event: string): SessionEventHandler[] {
    return [...(this.events.get(event) ?? []), ...(this.events.get('*') ?? [])];
  }

  /** session returns the live handle of session id, if any. */
  session(id: string): AppSession | undefined {
    return this.live.get(id);
  }

  /**
   * connect connects the session that hook starts (with the API key and the
   * hook's ticket) and waits for its first hello: for a backend that
   * receives its webhooks its own way (after verifying them).
   */
  async connect(hook: SessionStartHook, opts: { signal?: AbortSignal } = {}): Promise<AppSession> {
    const bad = this.checkStart(hook);
    if (bad) throw new TypeError(`junction apps: ${bad}`);
    const s = this.launch(hook.sessionId, hook.userId, hook.websocketUrl, hook.ticket, this.startDeadline(hook));
    await s.ready(opts.signal);
    return s;
  }

  /**
   * attach reattaches session id with the resume token the ResumeStore
   * holds for it and waits for its hello: after a restart of the backend,
   * or to take a session over from another instance (whose connection then
   * ends with 4009). A live handle of id is returned as is.
   */
  async attach(id: string, opts: { signal?: AbortSignal } = {}): Promise<AppSession> {
    const cur = this.live.get(id);
    if (cur) {
      await cur.ready(opts.signal);
      return cur;
    }
    const rec = await this.opts.resume.load(id);
    if (!rec) throw new NoResumeTokenError(id);
    let wsUrl = rec.url;
    if (!wsUrl) {
      if (!this.opts.url) throw new Error(`junction apps: attach ${id}: the stored record has no url, and there is no AppOptions.url`);
      wsUrl = this.opts.url.replace(/^http/, 'ws') + '/ws';
    }
    const s = this.launch(id, rec.userId ?? '', wsUrl, undefined, Date.now() + this.opts.connectTimeoutMs);
    await s.ready(opts.signal);
    return s;
  }

  /**
   * reattach attaches every session of the app that is running or
   * transport_down on Junction and that the ResumeStore holds a token for:
   * what a backend does when it starts again. Sessions without a stored
   * token are skipped. It resolves with the sessions attached and the
   * errors of those that could not be.
   */
  async reattach(): Promise<{ sessions: AppSession[]; errors: Error[] }> {
    const sessions: AppSession[] = [];
    const errors: Error[] = [];
    for (const state of ['transport_down', 'running'] as const) {
      for (const info of await this.sessions(state)) {
        if (this.live.has(info.id)) continue;
        try {
          sessions.push(await this.attach(info.id));
        } catch (err) {
          if (err instanceof NoResumeTokenError) this.log.debug('junction apps: no resume token for a session; not reattached', info.id);
          else errors.push(err as Error);
        }
      }
    }
    return { sessions, errors };
  }

  /** sessions lists the app's sessions in state (all states when omitted) over REST, every page. It needs AppOptions.url. */
  async sessions(state?: AppSessionInfo['state']): Promise<AppSessionInfo[]> {
    const all: AppSessionInfo[] = [];
    let after = '';
    for (;;) {
      const q = new URLSearchParams({ limit: '100' });
      if (state) q.set('state', state);
      if (after) q.set('after', after);
      const page = await this.rest<AppSessionList>('GET', `/api/v1/apps/${encodeURIComponent(this.appId)}/sessions?${q}`);
      all.push(...page.sessions);
      if (!page.next || page.sessions.length === 0) return all;
      after = page.next;
    }
  }

  /** @internal */
  rest<T>(method: string, path: string): Promise<T> {
    if (!this.opts.url) return Promise.reject(new Error('junction apps: no AppOptions.url to reach Junction\'s HTTP API'));
    return restCall<T>(this.opts.url, method, path, undefined, this.opts.apiKey, this.opts.fetch ? { fetch: this.opts.fetch } : {});
  }

  /** close detaches every session (each stays on Junction, transport_down, its token kept), stops connecting new ones and waits for the App's work to end. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.live.values()) s.detach();
    while (this.tasks.size) await Promise.allSettled([...this.tasks]);
  }

  /** @internal runs p as a task close waits for. */
  track(p: Promise<unknown>): void {
    const q = p.catch(() => {}).finally(() => this.tasks.delete(q));
    this.tasks.add(q);
  }

  /** @internal removes s from the live handles if it still is the one of its id. */
  forget(s: AppSession): void {
    if (this.live.get(s.id) === s) this.live.delete(s.id);
  }

  private launch(id: string, userId: string, wsUrl: string, ticket: string | undefined, deadline: number): AppSession {
    if (this.closed) throw new AppClosedError();
    const s = new AppSession(this, id, userId, wsUrl);
    const old = this.live.get(id);
    this.live.set(id, s);
    old?.detach();
    this.track(s.run(ticket, deadline));
    return s;
  }
}

/**
 * AppSession is the handle of one app session: its connection, kept alive
 * across transport losses, and its latest hello.
 */
export class AppSession {
  private readonly life = new AbortController();
  private cur: Client | undefined;
  private _hello: AppHello | undefined;
  private _reattaches = 0;
  private stopped: StoppedError | undefined;
  private _err: Error | undefined;
  private readyWaiters: { resolve(): void; reject(e: unknown): void }[] = [];
  private readonly handlers = new Map<string, SessionEventHandler[]>();
  private readonly ended: Promise<void>;
  private endedResolve!: () => void;

  /** @internal */
  constructor(
    private readonly app: App,
    readonly id: string,
    private _userId: string,
    private readonly wsUrl: string,
  ) {
    this.ended = new Promise((r) => (this.endedResolve = r));
  }

  /** The app's pseudonymous id of the session's user (from session.start, then from each hello). */
  get userId(): string {
    return this._userId;
  }

  /** The latest apps.hello answer (undefined before the first): scopes, subscriptions, settings, capabilities, device, priority. */
  get hello(): AppHello | undefined {
    return this._hello;
  }

  /** How many times the connection was replaced after a loss (each followed by a new hello). */
  get reattaches(): number {
    return this._reattaches;
  }

  /** Why the handle ended (StoppedError, DetachedError, SupersededError, a refused connect, …); undefined while it lives. */
  get err(): Error | undefined {
    return this._err;
  }

  /** The signal aborted when the handle ends. */
  get signal(): AbortSignal {
    return this.life.signal;
  }

  /** done resolves when the handle has ended for good; err then says why. */
  done(): Promise<void> {
    return this.ended;
  }

  /** on registers fn for the events named event ("*": all) on this session's connection, after the App's handlers; it returns a remover. */
  on(event: string, fn: SessionEventHandler): () => void {
    const l = this.handlers.get(event) ?? [];
    l.push(fn);
    this.handlers.set(event, l);
    return () => {
      const i = l.indexOf(fn);
      if (i >= 0) l.splice(i, 1);
    };
  }

  /**
   * call sends a request on the session's connection. Between connections
   * (while reattaching) it fails at once with code unavailable (retryable);
   * after the handle ended, with its err.
   */
  call<M extends keyof Methods>(method: M, params?: Methods[M]['params'], opts?: CallOptions): Promise<Methods[M]['result']>;
  call(method: string, params?: object, opts?: CallOptions): Promise<unknown>;
  call(method: string, params?: object, opts?: CallOptions): Promise<unknown> {
    if (this._err) return Promise.reject(this._err);
    if (!this.cur) return Promise.reject(new JunctionError({ code: 'unavailable', message: 'the session is not connected', retryable: true }));
    return this.cur.call(method, params, opts);
  }

  /**
   * stop stops the session on Junction (reason app_error: the app ended it)
   * and ends the handle with a StoppedError. With AppOptions.url it asks by
   * REST, else over the session's connection (apps.stopSession). Stopping a
   * stopped session answers alreadyStopped.
   */
  async stop(): Promise<AppSessionStopped> {
    const ref = { appId: this.app.appId, sessionId: this.id };
    const res = this.app.opts.url
      ? await this.app.rest<AppSessionStopped>('POST', `/api/v1/apps/${encodeURIComponent(ref.appId)}/sessions/${encodeURIComponent(this.id)}/stop`)
      : await this.call('apps.stopSession', ref);
    this.markStopped(res.session.stopReason ?? '');
    this.detach();
    return res;
  }

  /** close detaches the handle: the connection closes, the session stays on Junction (transport_down) with its resume token kept. */
  async close(): Promise<void> {
    this.detach();
    await this.ended;
  }

  /** @internal */
  detach(): void {
    if (!this.life.signal.aborted) this.life.abort(new DetachedError());
  }

  /** @internal the first reason wins. */
  markStopped(reason: string, cause?: unknown): void {
    this.stopped ??= new StoppedError(reason, cause);
  }

  /** @internal waits for the first hello; rejects with err when the handle ends without one, or with signal's reason (detaching). */
  ready(signal?: AbortSignal): Promise<void> {
    if (this._hello) return Promise.resolve();
    if (this._err) return Promise.reject(this._err);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.detach();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.readyWaiters.push({
        resolve: () => (signal?.removeEventListener('abort', onAbort), resolve()),
        reject: (e) => (signal?.removeEventListener('abort', onAbort), reject(e)),
      });
    });
  }

  private endReason(): Error | undefined {
    if (this.stopped) return this.stopped;
    if (this.life.signal.aborted) return new DetachedError();
    return undefined;
  }

  /** @internal connects and keeps the session connected until it ends. */
  async run(ticket: string | undefined, deadline: number): Promise<void> {
    let err: Error;
    try {
      err = await this.loop(ticket, deadline);
    } catch (e) {
      err = e instanceof Error ? e : new Error(String(e));
    }
    this.cur = undefined;
    this._err = err;
    this.detach();
    for (const w of this.readyWaiters.splice(0)) w.reject(err);
    if (err instanceof StoppedError && this._hello?.resumeToken) {
      try {
        await this.app.opts.resume.delete(this.id, this._hello.resumeToken);
      } catch (e) {
        this.app.log.warn('junction apps: delete resume token', e);
      }
    }
    this.app.forget(this);
    this.app.log.debug(`junction apps: session ${this.id} ended`, err);
    this.endedResolve();
  }

  private async loop(ticket: string | undefined, deadline: number): Promise<Error> {
    let attempt = 0;
    for (;;) {
      let c: Client;
      try {
        c = await this.dial(ticket);
      } catch (err) {
        const end = this.endReason();
        if (end) return end;
        const refused = this.refusal(err);
        if (refused) return refused;
        if (err instanceof NoResumeTokenError) return err;
        if (Date.now() > deadline) return new Error(`junction apps: session ${this.id}: gave up connecting: ${String(err)}`, { cause: err });
        this.app.log.debug(`junction apps: session ${this.id}: connect failed; retrying`, err);
        if (!(await this.sleep(this.backoff(attempt)))) return this.endReason()!;
        attempt++;
        continue;
      }
      ticket = undefined; // used up by the upgrade
      try {
        await this.helloOn(c);
      } catch (err) {
        this.cur = undefined;
        await c.close();
        const end = this.endReason();
        if (end) return end;
        if (err instanceof JunctionError && !err.retryable) return new Error(`junction apps: session ${this.id}: hello: ${err.message}`, { cause: err });
        if (!(await this.sleep(this.backoff(attempt)))) return this.endReason()!;
        attempt++;
        deadline = Date.now() + this.app.opts.reattachForMs;
        continue;
      }
      attempt = 0;
      let onAbort = () => {};
      const aborted = new Promise<void>((r) => (onAbort = r));
      this.life.signal.addEventListener('abort', onAbort, { once: true });
      if (this.life.signal.aborted) onAbort();
      await Promise.race([c.done(), aborted]);
      this.life.signal.removeEventListener('abort', onAbort);
      if (this.life.signal.aborted) await c.close();
      this.cur = undefined;
      const end = this.endReason();
      if (end) return end;
      const code = c.closeCode;
      if (code === 1000) {
        this.markStopped(''); // 1000 without app.stopped seen: stopped all the same
        return this.stopped!;
      }
      if (code === 4009) return new SupersededError();
      if (code !== 0 && !reconnectAdvised(code)) return new CloseError(code, `session ${this.id}: closed with ${code}`);
      this.app.log.debug(`junction apps: session ${this.id}: connection lost (${code}); reattaching`);
      deadline = Date.now() + this.app.opts.reattachForMs;
      if (!(await this.sleep(this.backoff(0)))) return this.endReason()!;
      attempt = 1;
    }
  }

  /** refusal maps an upgrade refused for good to the handle's end: 409 is a stopped session; other 4xx but 429 do not change by retrying. */
  private refusal(err: unknown): Error | undefined {
    if (!(err instanceof HandshakeError)) return undefined;
    if (err.status === 409) {
      this.markStopped('', err);
      return this.stopped;
    }
    if (err.status >= 400 && err.status < 500 && err.status !== 429) return new Error(`junction apps: session ${this.id}: connect refused: ${err.message}`, { cause: err });
    return undefined;
  }

  private async dial(ticket: string | undefined): Promise<Client> {
    const headers: Record<string, string> = {};
    let url = this.wsUrl;
    if (ticket) headers[HEADER_APP_TICKET] = ticket;
    else {
      const rec = await this.app.opts.resume.load(this.id);
      if (!rec) throw new NoResumeTokenError(this.id);
      headers[HEADER_APP_RESUME] = rec.token;
      if (rec.url) url = rec.url;
    }
    const c = new Client({ ...this.app.opts.client, url, token: this.app.opts.apiKey, headers, reconnect: false, WebSocket: this.app.opts.WebSocket });
    c.on('*', (data, frame) => this.dispatch(data, frame));
    await c.connect({ signal: this.life.signal });
    this.cur = c;
    return c;
  }

  private dispatch(data: unknown, frame: Frame): void {
    if (frame.event === 'app.stopped') {
      const st = data as AppStopped | undefined;
      if (!st?.sessionId || st.sessionId === this.id) this.markStopped(st?.reason ?? '');
    }
    for (const fn of [...this.app.handlers(frame.event ?? ''), ...(this.handlers.get(frame.event ?? '') ?? []), ...(this.handlers.get('*') ?? [])]) {
      try {
        fn(this, data, frame);
      } catch (err) {
        this.app.log.warn(`junction apps: handler of ${frame.event} threw`, err);
      }
    }
  }

  private async helloOn(c: Client): Promise<void> {
    const h = await c.call('apps.hello', { appId: this.app.appId, sessionId: this.id }, { signal: this.life.signal });
    const first = !this._hello;
    if (!first) this._reattaches++;
    this._hello = h;
    if (h.userId) this._userId = h.userId;
    try {
      await this.app.opts.resume.save({ sessionId: this.id, token: h.resumeToken, url: this.wsUrl, userId: this._userId });
    } catch (err) {
      // The session runs; only a later reattach (after a restart) is lost.
      this.app.log.warn('junction apps: save resume token', err);
    }
    if (first) {
      for (const w of this.readyWaiters.splice(0)) w.resolve();
      const fn = this.app.opts.onSession;
      if (fn) this.app.track(Promise.resolve().then(() => fn(this, this.life.signal)));
    }
  }

  private backoff(n: number): number {
    return backoffDelay(n, this.app.opts.client?.minBackoffMs || DEFAULTS.minBackoffMs, this.app.opts.client?.maxBackoffMs || DEFAULTS.maxBackoffMs);
  }

  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.life.signal.aborted) return resolve(false);
      const onAbort = () => {
        clearTimeout(t);
        resolve(false);
      };
      const t = setTimeout(() => {
        this.life.signal.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      this.life.signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
