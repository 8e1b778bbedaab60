import type { FastifyInstance } from 'fastify'
import type { GatewayError } from '../errors.js'
import type { Ack, RefusalBody } from '../protocol/messages.js'
import { tenantRoom, userRoom } from '../protocol/rooms.js'
import type { DisconnectReason } from '../plugins/io.js'
import type { GatewaySocket } from './types.js'

/** The `connect_error` a refused handshake gets: message = the §6 code, data = the details (SPEC §5). */
export interface ConnectRefusal extends Error {
  data: RefusalBody
}

export function connectRefusal (err: GatewayError): ConnectRefusal {
  const refusal = new Error(err.code) as ConnectRefusal
  refusal.data = packetRefusal(err)
  return refusal
}

/** The body of a refused packet: in the ack, or in `gateway:error` with the event name. */
export function packetRefusal (err: GatewayError): RefusalBody {
  return { code: err.code, message: err.message, ...(err.retryAfter !== undefined ? { retryAfter: err.retryAfter } : {}) }
}

/** Tells the client a refusal of its packet `event`: through the packet's ack, or `gateway:error` without one. */
export function answerRefusal (socket: GatewaySocket, event: string, ack: Ack | undefined, body: RefusalBody): void {
  if (ack !== undefined) ack({ ok: false, error: body })
  else socket.emit('gateway:error', { ...body, event })
}

/**
 * Mirrors a refusal or a forced disconnect to the subject's `/error` sockets
 * (SPEC §5: delivered to `user:<sub>` there, on every instance; §14: of the subject's own tenant).
 */
export function notifySubject (app: FastifyInstance, socket: GatewaySocket, err: GatewayError, event: string): void {
  const { tenant, sub } = socket.data.principal
  app.io.of('/error').to(tenantRoom(tenant, userRoom(sub))).emit('gateway:error', { ...packetRefusal(err), event, namespace: socket.nsp.name })
}

/**
 * Closes a socket the gateway no longer accepts, telling it why first
 * (`gateway:error` with event `disconnect`, also mirrored to `/error`). Only
 * this namespace's socket closes: the connection may carry others, under
 * other credentials. A flood closes the whole connection.
 */
export function forceDisconnect (app: FastifyInstance, socket: GatewaySocket, err: GatewayError, event = 'disconnect'): void {
  if (!socket.connected) return
  socket.data.closeReason = event === 'flood' ? 'flood' : closeReasonOf(err)
  // A flood closes the whole connection: its other namespaces' sockets go for the same reason.
  if (event === 'flood') closedConnections.set(socket.conn, 'flood')
  socket.emit('gateway:error', { ...packetRefusal(err), event })
  notifySubject(app, socket, err, event)
  socket.disconnect(event === 'flood')
}

function closeReasonOf (err: GatewayError): DisconnectReason {
  switch (err.code) {
    case 'KEY_REVOKED': case 'TOKEN_REVOKED': return 'revoked'
    case 'TOKEN_EXPIRED': case 'KEY_EXPIRED': return 'expired'
    default: return 'policy'
  }
}

const closedConnections = new WeakMap<object, DisconnectReason>()

/** Why the gateway closed a whole connection (a flood), for the sockets of its other namespaces. */
export function connectionCloseReason (socket: GatewaySocket): DisconnectReason | undefined {
  return closedConnections.get(socket.conn)
}
