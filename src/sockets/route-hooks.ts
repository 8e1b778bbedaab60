import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Principal } from '../auth/principal.js'
import type { GatewayError } from '../errors.js'
import type { DisconnectReason } from '../plugins/io.js'
import { joinedRooms } from '../protocol/rooms.js'
import { backendRefusal } from '../routing/backend-refusal.js'
import { routeEvent } from '../routing/route-event.js'
import type { RouteEvent } from '../routing/types.js'
import type { GatewaySocket } from './types.js'
import { connectionCloseReason } from './refusal.js'

// What a lifecycle event weighs in a notify queue (its principal, ids and names).
const LIFECYCLE_EVENT_BYTES = 1024

/**
 * Asks the route taking `$connect` or `$join`, after the gateway's own checks
 * passed (SPEC §10): the backend's refusal, or undefined. Undefined at once
 * when no route takes the event; a route in notify mode is told and never
 * waited for.
 */
export function askRoute (
  app: FastifyInstance, socket: GatewaySocket, principal: Principal, event: '$connect' | '$join', room: string | null
): undefined | Promise<GatewayError | undefined> {
  const route = app.forwarding.match(socket.nsp.name, event)
  if (route === undefined) return undefined
  const answer = app.forwarding.send(route, routeEvent(randomUUID(), event === '$connect' ? 'connect' : 'join', principal, socket.nsp.name, room, event, null, socket.id), LIFECYCLE_EVENT_BYTES)
  if (route.mode === 'notify') return undefined
  return Promise.resolve(answer).then((settled) => settled.ok ? undefined : backendRefusal(settled))
}

/** Tells the route taking `$leave`, if any (notify mode: nothing waits for it). */
export function tellLeave (app: FastifyInstance, socket: GatewaySocket, room: string): void {
  const route = app.forwarding.match(socket.nsp.name, '$leave')
  if (route !== undefined) void app.forwarding.send(route, routeEvent(randomUUID(), 'leave', socket.data.principal, socket.nsp.name, room, '$leave', null, socket.id), LIFECYCLE_EVENT_BYTES)
}

/**
 * Tells the route taking `$disconnect`, if any, why the socket went and the
 * rooms it had joined (called on `disconnecting`, while it still has them).
 */
export function tellDisconnect (app: FastifyInstance, socket: GatewaySocket, socketIoReason: string): void {
  const route = app.forwarding.match(socket.nsp.name, '$disconnect')
  if (route === undefined) return
  const rooms = joinedRooms(socket.data.principal.tenant, socket.rooms, socket.id)
  const payload: RouteEvent = routeEvent(randomUUID(), 'disconnect', socket.data.principal, socket.nsp.name, null, '$disconnect', { rooms }, socket.id)
  payload.reason = disconnectReason(socket, socketIoReason)
  void app.forwarding.send(route, payload, LIFECYCLE_EVENT_BYTES + rooms.length * 64)
}

/** Socket.IO's reason for a disconnect, in the words of SPEC §10 (the gateway's own reason wins when it closed the socket). */
export function disconnectReason (socket: GatewaySocket, socketIoReason: string): DisconnectReason {
  const own = socket.data.closeReason ?? connectionCloseReason(socket)
  if (own !== undefined) return own
  switch (socketIoReason) {
    case 'client namespace disconnect': return 'client'
    case 'server shutting down': return 'shutdown'
    // Every other close of the gateway's own says why (forceDisconnect, the shutdown): the one left is a
    // key's revocation (disconnectKey, on every instance, through the adapter).
    case 'server namespace disconnect': return 'revoked'
    case 'ping timeout': return 'timeout'
    default: return 'transport'
  }
}
