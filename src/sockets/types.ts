import type { Namespace, Server, Socket } from 'socket.io'
import type { Principal } from '../auth/principal.js'

/**
 * What the gateway keeps on each socket (`socket.data`). Plain data only: the
 * Redis adapter serialises it as JSON for `fetchSockets` on other instances,
 * so timers or functions here would break cluster-wide revocation.
 */
export interface SocketState {
  principal: Principal
  ip: string
  /** Per-socket packet window: the limit is local to one connection, so it is counted here, exactly. */
  windowStart: number
  windowCount: number
  windowRefused: number
  /** The window (its start) in which `/error` was last told of a rate limit: once per window is enough. */
  rateNoticeAt: number
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the protocol's events are open-ended (any event E is relayed)
type AnyEvents = Record<string, (...args: any[]) => void>
export type GatewayServer = Server<AnyEvents, AnyEvents, AnyEvents, SocketState>
export type GatewayNamespace = Namespace<AnyEvents, AnyEvents, AnyEvents, SocketState>
export type GatewaySocket = Socket<AnyEvents, AnyEvents, AnyEvents, SocketState>

export { HANDLED_EVENTS, isReservedEvent, MAX_EVENT_NAME } from '../protocol/events.js'
export type { RelayedMessage } from '../protocol/messages.js'

