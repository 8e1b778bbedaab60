export type { SocketState, GatewayServer, GatewayNamespace, GatewaySocket } from '../plugins/io.js'
export { HANDLED_EVENTS, isReservedEvent, MAX_EVENT_NAME } from '../protocol/events.js'
export type { RelayedMessage } from '../protocol/messages.js'
