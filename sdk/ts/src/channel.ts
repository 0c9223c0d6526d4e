import type { Client, Frame } from './client.js';
import { JunctionError } from './errors.js';
import type { HistoryResult, PresenceResult, Publication as WirePublication, SubscribeParams, SubscribeResult, Unsubscribed } from './gen/protocol.js';

/** Publication is one message of a channel, as delivered to a subscription's handler. */
export interface Publication<T = unknown> {
  topic: string;
  epoch: string;
  offset: number;
  data: T;
}

/** Subscribed describes one successful (re)subscription. */
export interface Subscribed {
  topic: string;
  epoch: string;
  offset: number;
  /** true after a reconnect (or a resubscribe the server advised), false for the first subscription. */
  resubscribed: boolean;
  /**
   * true when the publications missed while away follow from history:
   * nothing was lost. A resubscription that is not recovered means the gap
   * was outside the server's history: reset the state from snapshot (or
   * refetch it) before the publications that follow.
   */
  recovered: boolean;
  /** The namespace's snapshot, when it has a provider and the subscription did not recover from history. */
  snapshot?: unknown;
}

/** SubscribeOptions are a subscription's optional callbacks; they run in order with the handler. */
export interface SubscribeOptions {
  /** Runs after every successful subscription, before the publications that follow it. */
  onSubscribed?: (s: Subscribed) => void;
  /** Runs when the server removed the subscription for good (channel.unsubscribed), with its reason. */
  onUnsubscribed?: (reason: string) => void;
  /** Bounds the first subscribe call. */
  signal?: AbortSignal;
}

interface ChannelState {
  subs: Map<string, Subscription>;
}

const states = new WeakMap<Client, ChannelState>();

function channels(c: Client): ChannelState {
  let st = states.get(c);
  if (st) return st;
  const state: ChannelState = { subs: new Map() };
  st = state;
  states.set(c, st);
  c.on('channel.message', (_data, f) => state.subs.get(f.topic ?? '')?.onMessage(f));
  c.on('channel.unsubscribed', (data, f) => state.subs.get(f.topic ?? '')?.onUnsubscribed(data));
  c.onConnect(async (reconnected, signal) => {
    if (!reconnected) return;
    await Promise.all([...state.subs.values()].map((s) => s.resubscribe(signal)));
  });
  return st;
}

/**
 * Subscription is a channel subscription that survives reconnects: after
 * each reconnect it subscribes again with the position it last delivered,
 * so that the server replays exactly the publications missed, and it
 * delivers each offset at most once, in order.
 */
export class Subscription<T = unknown> {
  private epoch = '';
  private offset = 0;
  private positioned = false;
  private joining = false;
  private pending: Frame[] = [];
  private done = false;

  /** @internal */
  constructor(
    private readonly client: Client,
    readonly topic: string,
    private readonly handler: (p: Publication<T>) => void,
    private readonly opts: SubscribeOptions,
  ) {}

  /** position is the position of the last publication delivered (or of the subscription, before any). */
  get position(): { epoch: string; offset: number } {
    return { epoch: this.epoch, offset: this.offset };
  }

  /** unsubscribe ends the subscription. */
  async unsubscribe(opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.done = true;
    this.pending = [];
    const st = channels(this.client);
    if (st.subs.get(this.topic) === this) st.subs.delete(this.topic);
    await this.client.call('channel.unsubscribe', { topic: this.topic }, opts.signal ? { signal: opts.signal } : {});
  }

  /** @internal subscribe makes one channel.subscribe call, from the last position when there is one. */
  async subscribe(resubscribed: boolean, signal?: AbortSignal): Promise<void> {
    if (this.done) return;
    const params: SubscribeParams = { topic: this.topic };
    if (this.positioned) params.since = { epoch: this.epoch, offset: this.offset };
    this.joining = true;
    this.pending = [];
    let res: SubscribeResult;
    try {
      res = await this.client.call('channel.subscribe', params, signal ? { signal } : {});
    } finally {
      this.joining = false;
    }
    const pending = this.pending;
    this.pending = [];
    if (this.done) return;
    if (!res.recovered) {
      this.epoch = res.epoch;
      this.offset = res.offset;
      this.positioned = true;
    }
    const s: Subscribed = { topic: this.topic, epoch: res.epoch, offset: res.offset, resubscribed, recovered: res.recovered };
    if (res.snapshot !== undefined) s.snapshot = res.snapshot;
    try {
      this.opts.onSubscribed?.(s);
    } catch (err) {
      this.client.logger.warn(`junction: onSubscribed of ${this.topic} threw`, err);
    }
    for (const p of res.publications ?? []) this.deliver(p.epoch, p.offset, p.data);
    if (res.recovered) {
      this.epoch = res.epoch;
      this.offset = Math.max(this.offset, res.offset);
      this.positioned = true;
    }
    for (const f of pending) this.deliver(f.epoch ?? '', f.offset ?? 0, f.data);
  }

  /** @internal resubscribe renews the subscription on a new connection, retrying retryable failures while it lasts. */
  async resubscribe(signal: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.subscribe(true, signal);
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof JunctionError && !err.retryable && err.code !== 'conflict') return;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(attempt, 20) * 50);
        signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
      if (signal.aborted) return;
    }
  }

  private deliver(epoch: string, offset: number, data: unknown): void {
    if (this.done || epoch !== this.epoch || offset <= this.offset) return; // another stream life, or delivered already
    this.offset = offset;
    try {
      this.handler({ topic: this.topic, epoch, offset, data: data as T });
    } catch (err) {
      // The publication counts as delivered: a throwing handler does not
      // stop the ones after it (nor a resubscription's replay).
      this.client.logger.warn(`junction: subscription handler of ${this.topic} threw`, err);
    }
  }

  /** @internal */
  onMessage(f: Frame): void {
    if (this.joining) {
      this.pending.push(f);
      return;
    }
    this.deliver(f.epoch ?? '', f.offset ?? 0, f.data);
  }

  /** @internal */
  onUnsubscribed(ev: Unsubscribed): void {
    if (ev.resubscribe) {
      const ac = new AbortController();
      const t = setTimeout(() => ac.abort(), 30_000);
      void this.resubscribe(ac.signal).finally(() => clearTimeout(t));
      return;
    }
    const st = channels(this.client);
    if (st.subs.get(this.topic) === this) st.subs.delete(this.topic);
    this.done = true;
    this.opts.onUnsubscribed?.(ev.reason);
  }
}

/**
 * subscribe subscribes client to topic and calls handler for each
 * publication, in offset order, exactly once per offset. The subscription is
 * renewed after every reconnect from the last delivered position. A topic
 * can be subscribed once per client.
 */
export async function subscribe<T = unknown>(client: Client, topic: string, handler: (p: Publication<T>) => void, opts: SubscribeOptions = {}): Promise<Subscription<T>> {
  const st = channels(client);
  if (st.subs.has(topic)) throw new JunctionError({ code: 'conflict', message: `already subscribed to ${JSON.stringify(topic)}` });
  const s = new Subscription<T>(client, topic, handler, opts);
  st.subs.set(topic, s as Subscription);
  try {
    await s.subscribe(false, opts.signal);
  } catch (err) {
    if (st.subs.get(topic) === s) st.subs.delete(topic);
    throw err;
  }
  return s;
}

/** publish publishes data to topic and returns the publication's position. */
export function publish(client: Client, topic: string, data: unknown, opts: { idem?: string; signal?: AbortSignal } = {}): Promise<{ epoch: string; offset: number }> {
  return client.call('channel.publish', { topic, data }, opts);
}

/** presence returns the clients present on topic (namespaces with presence). */
export function presence(client: Client, topic: string): Promise<PresenceResult> {
  return client.call('channel.presence', { topic });
}

/** history returns the publications of topic after since (or the most recent ones), at most limit. */
export function history(client: Client, topic: string, opts: { since?: { epoch: string; offset: number }; limit?: number } = {}): Promise<HistoryResult> {
  return client.call('channel.history', { topic, ...opts });
}

export type { WirePublication };
