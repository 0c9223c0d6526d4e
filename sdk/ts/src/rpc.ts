import type { CallOptions, Client, Frame } from './client.js';
import { JunctionError } from './errors.js';
import type { Caller, RPCCancel, RPCListResult, RPCProgress } from './gen/protocol.js';

/** RPCRequest is a call relayed to this client by the gateway (see Client.serve). */
export interface RPCRequest<P = unknown> {
  /** The gateway's id of the relayed request; rpc.progress and rpc.cancel name it. */
  id: string;
  method: string;
  /** The caller's params (an object, {} when the caller sent none). */
  params: P;
  /** Who is calling, as the gateway authenticated them. */
  caller: Caller | undefined;
  /** Aborts when the caller cancels, the call times out, or the connection ends. */
  signal: AbortSignal;
  /** progress sends data to the caller as an rpc.progress event, before the result. */
  progress(data: unknown): void;
}

/**
 * RPCHandler serves one relayed call. Its result is the caller's result; a
 * thrown JunctionError reaches the caller with its code, anything else as
 * internal.
 */
export type RPCHandler<P = any> = (req: RPCRequest<P>) => unknown | Promise<unknown>;

interface RPCState {
  methods: Set<string>;
  progress: Map<string, (data: unknown) => void>;
}

const states = new WeakMap<Client, RPCState>();

function rpc(c: Client): RPCState {
  let st = states.get(c);
  if (st) return st;
  const state: RPCState = { methods: new Set(), progress: new Map() };
  st = state;
  states.set(c, st);
  c.on('rpc.cancel', (d: RPCCancel) => c.abortServed(d.id, new JunctionError({ code: 'timeout', message: d.reason || 'cancelled' })));
  c.on('rpc.progress', (d: RPCProgress) => state.progress.get(d.id)?.(d.data));
  c.onConnect(async (_reconnected, signal) => {
    if (!state.methods.size) return;
    try {
      await c.call('rpc.register', { methods: [...state.methods] }, { signal });
    } catch (err) {
      if (!signal.aborted) c.logger.warn('junction: register served methods', err);
    }
  });
  return st;
}

/**
 * serve serves method for callers relayed by the gateway (a machine, or a
 * device whose token holds scope rpc.serve). The method is registered now
 * when connected, and again after every reconnect; before connect it is
 * registered on connect.
 */
export async function serve<P = any>(client: Client, method: string, handler: RPCHandler<P>): Promise<void> {
  const st = rpc(client);
  client.handle(method, (f: Frame, signal: AbortSignal) =>
    handler({
      id: f.id ?? '',
      method: f.method ?? method,
      params: (f.params ?? {}) as P,
      caller: f.meta?.caller,
      signal,
      progress: (data) => client.sendEvent('rpc.progress', { id: f.id, data }),
    }),
  );
  st.methods.add(method);
  if (client.state === 'connected') await client.call('rpc.register', { methods: [method] });
}

/** CallDeviceOptions configure a callDevice. */
export interface CallDeviceOptions extends CallOptions {
  /** Receives the data of the call's rpc.progress events, in order, before the result. */
  onProgress?: (data: unknown) => void;
}

/**
 * callDevice calls method on the device deviceId through the gateway
 * (rpc.call). Errors of the target and of the gateway (forbidden,
 * unknown_method, timeout, unavailable...) reject with a JunctionError. When
 * signal aborts first the gateway is told with rpc.cancel (the target gets
 * an rpc.cancel event) and the call rejects with the signal's reason.
 * timeoutMs is the call's timeout at the gateway (default callTimeoutMs).
 */
export async function callDevice<R = unknown>(client: Client, deviceId: string, method: string, params?: object, opts: CallDeviceOptions = {}): Promise<R> {
  const st = rpc(client);
  const timeoutMs = Math.max(1, Math.round(opts.timeoutMs ?? client.callTimeoutMs));
  const callParams: { target: { deviceId: string }; method: string; params?: object; timeoutMs: number } = { target: { deviceId }, method, timeoutMs };
  if (params !== undefined) callParams.params = params;
  const ac = new AbortController();
  const onAbort = () => ac.abort(opts.signal!.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) ac.abort(opts.signal.reason);
  const reqOpts: CallOptions & { localTimeoutMs: number } = { signal: ac.signal, localTimeoutMs: timeoutMs + 5000 };
  if (opts.idem) reqOpts.idem = opts.idem;
  const { id, promise } = client.request('rpc.call', callParams, reqOpts);
  if (opts.onProgress) st.progress.set(id, opts.onProgress);
  try {
    return (await promise) as R;
  } catch (err) {
    if (ac.signal.aborted || (err instanceof JunctionError && err.code === 'timeout' && err.message.startsWith('rpc.call:'))) {
      // Given up locally: tell the gateway, which tells the target.
      client.call('rpc.cancel', { id }, { timeoutMs: 1000 }).catch(() => {});
    }
    throw err;
  } finally {
    st.progress.delete(id);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** rpcList returns the methods a device serves (that the caller may call). */
export function rpcList(client: Client, deviceId: string): Promise<RPCListResult> {
  return client.call('rpc.list', { target: { deviceId } });
}
