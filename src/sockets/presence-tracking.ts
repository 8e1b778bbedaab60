import type { FastifyInstance } from 'fastify'
import { clientRoomName, isManagedRoom } from '../protocol/rooms.js'
import type { GatewayNamespace } from './types.js'

/**
 * Feeds presence from the one place every join and leave of a namespace
 * passes: its adapter's `join-room` and `leave-room` (a client's join, a
 * recovered session's rooms, a leave, a policy taking a room away, a
 * disconnect). Rooms the gateway manages are not counted.
 */
export function trackPresence (app: FastifyInstance, nsp: GatewayNamespace): void {
  const namespace = nsp.name
  const subjectOf = (room: string, id: string): string | undefined => {
    if (room === id) return undefined
    const principal = nsp.sockets.get(id)?.data.principal
    if (principal === undefined) return undefined
    const name = clientRoomName(principal.tenant, room)
    return name === undefined || isManagedRoom(name, id) ? undefined : principal.sub
  }
  nsp.adapter.on('join-room', (room: string, id: string) => {
    const sub = subjectOf(room, id)
    if (sub !== undefined) app.presence.joined(namespace, room, sub)
  })
  nsp.adapter.on('leave-room', (room: string, id: string) => {
    const sub = subjectOf(room, id)
    if (sub !== undefined) app.presence.left(namespace, room, sub)
  })
}
