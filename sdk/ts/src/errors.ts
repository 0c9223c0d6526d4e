import type { Error as ErrorObject } from './gen/protocol.js';

/** ErrorCode is one of the protocol's stable error codes (docs/PROTOCOL.md §4). */
export type ErrorCode = ErrorObject['code'];

/**
 * JunctionError is an error answer of the server (or of a target device
 * through the gateway), with the protocol's stable code. The SDK uses the
 * same codes for what it detects itself: `unavailable` (retryable) for a
 * call made while disconnected or whose connection died, `timeout` for a
 * call that got no answer in time.
 */
export class JunctionError extends Error {
  /** The stable code: branch on it. */
  readonly code: ErrorCode;
  /** Whether repeating the request may succeed. */
  readonly retryable: boolean;
  /** How long to wait before a retry, when the server said. */
  readonly retryAfterMs: number | undefined;
  /** Code-specific details (details.field names a bad parameter). */
  readonly details: Record<string, unknown> | undefined;

  constructor(e: { code: ErrorCode; message: string; retryable?: boolean; retryAfterMs?: number; details?: Record<string, unknown> }) {
    super(e.message);
    this.name = 'JunctionError';
    this.code = e.code;
    this.retryable = e.retryable ?? false;
    this.retryAfterMs = e.retryAfterMs;
    this.details = e.details;
  }

  /** toJSON returns the wire form of the error object. */
  toJSON(): ErrorObject {
    const o: ErrorObject = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.retryAfterMs) o.retryAfterMs = this.retryAfterMs;
    if (this.details) o.details = this.details;
    return o;
  }
}

const CODES = new Set<string>(['invalid_frame', 'bad_request', 'unauthorized', 'forbidden', 'not_found', 'conflict',
  'unknown_method', 'rate_limited', 'too_large', 'timeout', 'unavailable', 'internal']);

/** fromWire turns a wire error object into a JunctionError (an unknown code becomes internal). */
export function fromWire(e: unknown): JunctionError {
  const o = (e && typeof e === 'object' ? e : {}) as Partial<ErrorObject>;
  const code = typeof o.code === 'string' && CODES.has(o.code) ? (o.code as ErrorCode) : 'internal';
  return new JunctionError({
    code,
    message: typeof o.message === 'string' ? o.message : code,
    retryable: o.retryable === true,
    ...(typeof o.retryAfterMs === 'number' ? { retryAfterMs: o.retryAfterMs } : {}),
    ...(o.details && typeof o.details === 'object' ? { details: o.details } : {}),
  });
}

/**
 * HandshakeError reports a WebSocket upgrade the server refused with an HTTP
 * status (401 bad credential, 403 origin, 429 rate limited, 503 lockdown or
 * overload). Only WebSocket implementations that expose the refused response
 * (the `ws` package in Node) report it; a browser sees a closed connection.
 */
export class HandshakeError extends Error {
  readonly status: number;
  /** The decoded JSON error body, when it was one. */
  readonly error: JunctionError | undefined;
  /** The server's Retry-After (or the body's retryAfterMs), in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(status: number, error: JunctionError | undefined, retryAfterMs: number | undefined) {
    super(`junction: handshake refused with http ${status}${error ? `: ${error.code}: ${error.message}` : ''}`);
    this.name = 'HandshakeError';
    this.status = status;
    this.error = error;
    this.retryAfterMs = retryAfterMs;
  }
}

/** CloseError reports a connection the server closed with a close frame. */
export class CloseError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string) {
    super(`junction: connection closed by server: ${code} ${reason}`);
    this.name = 'CloseError';
    this.code = code;
    this.reason = reason;
  }
}

/** ClosedError is what calls get after Client.close, or once the client gave up reconnecting. */
export class ClosedError extends Error {
  constructor() {
    super('junction: client closed');
    this.name = 'ClosedError';
  }
}

export const notConnected = () => new JunctionError({ code: 'unavailable', message: 'not connected', retryable: true });
export const connectionLost = () => new JunctionError({ code: 'unavailable', message: 'connection lost', retryable: true });
