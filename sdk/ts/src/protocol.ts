// The protocol's types, generated from the server's AsyncAPI and OpenAPI
// documents (src/gen), and the close-code table.
export type * from './gen/protocol.js';
export { METHOD_SCOPES } from './gen/protocol.js';
export type * as Rest from './gen/rest.js';
export * from './disconnect.js';
