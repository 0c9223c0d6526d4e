// Close codes and their reconnect advice: the table of docs/PROTOCOL.md §6,
// as the Go package protocol holds it (protocol.Disconnect). A test checks
// this table against the document.

/** Reconnect is a close code's advice about reconnecting. */
export type Reconnect = 'no' | 'new-token' | 'backoff' | 'soon' | 'later' | 'resume';

/** Disconnect is a close code, its short reason and its reconnect advice. */
export interface Disconnect {
  code: number;
  reason: string;
  reconnect: Reconnect;
}

/** The close codes Junction sends. */
export const DISCONNECTS: readonly Disconnect[] = [
  { code: 1000, reason: 'normal closure', reconnect: 'no' },
  { code: 1001, reason: 'going away', reconnect: 'backoff' },
  { code: 1002, reason: 'protocol error', reconnect: 'backoff' },
  { code: 1003, reason: 'binary messages are not supported', reconnect: 'no' },
  { code: 1008, reason: 'policy violation', reconnect: 'no' },
  { code: 1009, reason: 'message too big', reconnect: 'no' },
  { code: 1011, reason: 'internal error', reconnect: 'backoff' },
  { code: 1012, reason: 'server restart', reconnect: 'soon' },
  { code: 1013, reason: 'try again later', reconnect: 'later' },
  { code: 4001, reason: 'token expired', reconnect: 'new-token' },
  { code: 4003, reason: 'forbidden', reconnect: 'no' },
  { code: 4009, reason: 'replaced by a newer connection', reconnect: 'no' },
  { code: 4010, reason: 'server in lockdown', reconnect: 'no' },
  { code: 4011, reason: 'disconnected by an administrator', reconnect: 'no' },
  { code: 4102, reason: 'heartbeat timeout', reconnect: 'backoff' },
  { code: 4108, reason: 'slow consumer', reconnect: 'resume' },
];

/**
 * disconnectFor returns the Disconnect of code. For a code Junction does not
 * send the advice follows its range: 4000-4099 are terminal, anything else
 * advises reconnecting with backoff.
 */
export function disconnectFor(code: number): Disconnect {
  const d = DISCONNECTS.find((x) => x.code === code);
  if (d) return d;
  return { code, reason: '', reconnect: isTerminal(code) ? 'no' : 'backoff' };
}

/** isTerminal reports whether code is in 4000-4099: the credential or device may not connect again as it is. */
export function isTerminal(code: number): boolean {
  return code >= 4000 && code <= 4099;
}

/** reconnectAdvised reports whether a client should reconnect automatically after code. */
export function reconnectAdvised(code: number): boolean {
  const r = disconnectFor(code).reconnect;
  return r === 'backoff' || r === 'soon' || r === 'later' || r === 'resume';
}

/**
 * backoffDelay is the delay before reconnect attempt n (from 0): a random
 * duration between minMs and min(maxMs, minMs·2^(n+1)), so that clients
 * dropped together do not come back together. random returns [0, 1).
 */
export function backoffDelay(n: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  let ceil = minMs;
  for (let i = 0; i <= n && ceil < maxMs; i++) ceil *= 2;
  ceil = Math.min(ceil, maxMs);
  return minMs + random() * (ceil - minMs);
}

/** shutdownDelay is the delay after server.shutdown: reconnectAfterMs plus a jitter of up to max(reconnectAfterMs/4, minMs). */
export function shutdownDelay(reconnectAfterMs: number, minMs: number, random: () => number = Math.random): number {
  return reconnectAfterMs + random() * Math.max(reconnectAfterMs / 4, minMs);
}
