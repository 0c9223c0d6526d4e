// @junctionhq/junction: the TypeScript SDK of Junction (docs/PROTOCOL.md).
export { Client, DEFAULTS, SUBPROTOCOL, BEARER_PREFIX } from './client.js';
export type { CallOptions, ClientOptions, Frame, Logger, RequestHandler, State, TokenProvider, TokenRequest } from './client.js';
export { Subscription } from './channel.js';
export type { Publication, Subscribed, SubscribeOptions } from './channel.js';
export type { CallDeviceOptions, RPCHandler, RPCRequest } from './rpc.js';
export { JunctionError, HandshakeError, CloseError, ClosedError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { DISCONNECTS, backoffDelay, disconnectFor, isTerminal, reconnectAdvised, shutdownDelay } from './disconnect.js';
export type { Disconnect, Reconnect } from './disconnect.js';
export { LoginSession, createPairing, login, logout, me, normalizePairingCode, pair, refresh, restCall } from './rest.js';
export type { LoginDevice, RestOptions, Tokens } from './rest.js';
export * as e2e from './crypto.js';
export type { WebSocketConstructor, WebSocketLike } from './socket.js';
export type { EventData, Methods, Welcome } from './gen/protocol.js';
