/**
 * WebSocketLike is the part of the standard WebSocket API the client uses:
 * browsers' WebSocket, Node 22's global one, and the `ws` package's (which
 * the client also uses to read a refused handshake's status and the
 * server's pings) all fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/**
 * WebSocketConstructor builds a WebSocketLike (new WebSocket(url, protocols)).
 * The third argument is the `ws` package's options; the client passes it
 * only with ClientOptions.headers (browsers cannot set headers).
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: { headers?: Record<string, string> }) => WebSocketLike;

/** The subset of the `ws` package's EventEmitter API the client uses when it is there. */
export interface NodeWebSocketExtras {
  on(event: 'ping', fn: () => void): unknown;
  on(event: 'unexpected-response', fn: (req: { destroy(err?: Error): void }, res: NodeResponse) => void): unknown;
  terminate?(): void;
}

export interface NodeResponse {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
  on(event: 'data', fn: (chunk: Uint8Array) => void): unknown;
  on(event: 'end' | 'error' | 'close', fn: () => void): unknown;
  setEncoding?(enc: string): void;
}

export function hasNodeExtras(ws: WebSocketLike): ws is WebSocketLike & NodeWebSocketExtras {
  return typeof (ws as unknown as { on?: unknown }).on === 'function';
}

/** utf8Length returns the UTF-8 byte length of s. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
