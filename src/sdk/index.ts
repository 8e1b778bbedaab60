/**
 * The Spark Gateway client SDK (SPEC §8): Node 20+ and browsers, through
 * socket.io-client and the global fetch. See README "Client SDK".
 */
export { createClient } from './client.js'
export type { Client, ClientEvents, ClientOptions } from './client.js'
export type { HistoryMessage, Namespace, Presence, PublishAck, RelayedMessage } from './namespace.js'
export { GatewayError, GATEWAY_CODES, SDK_CODES, remedyFor } from './errors.js'
export type { ErrorCode, ErrorDetails, GatewayCode, Remedy, SdkCode } from './errors.js'
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js'
export type { BackoffOptions } from './backoff.js'
export type { GetToken, TokenGrant, TokenRequest } from './tokens.js'
