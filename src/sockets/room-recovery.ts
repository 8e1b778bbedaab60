import type { FastifyInstance } from 'fastify'
import { compareStreamIds, parseStreamId } from '../protocol/message-ids.js'
import type { Recovery } from '../history/types.js'
import type { Hold } from './broadcast-hold.js'
import type { GatewaySocket } from './types.js'

/** Holds the broadcasts of a room back from a socket while it is replayed the room's history. */
export type HoldRoom = (socket: GatewaySocket, room: string) => Hold

/** What a `join` with `since` adds to its ack (SPEC §12). */
export interface Recovered { recovered: boolean, missed: number }

/**
 * Puts the socket in `room` (its name within the tenant) and replays what
 * the room's history kept after `since`, in order, before any live message,
 * none twice: the room's broadcasts are held from the moment it joins until
 * the replay is out (see broadcast-hold.ts). A history that cannot be read
 * leaves the socket joined and says `recovered: false`.
 */
export async function joinSince (app: FastifyInstance, socket: GatewaySocket, holdRoom: HoldRoom, room: string, since: string): Promise<Recovered> {
  const namespace = socket.nsp.name
  if (!app.history.keeps(namespace)) {
    // Nothing is kept here: the client cannot know what it missed.
    if (!socket.rooms.has(room)) void socket.join(room)
    return { recovered: false, missed: 0 }
  }
  const hold = holdRoom(socket, room)
  let recovery: Recovery = { recovered: false, messages: [] }
  let last: [number, number] | undefined
  try {
    if (!socket.rooms.has(room)) void socket.join(room)
    try {
      recovery = await app.history.since(namespace, room, since)
    } catch (err) {
      app.log.warn({ err, namespace }, 'history unavailable: a join with since recovered nothing')
    }
    // A leave during the read: nothing more for this room.
    if (socket.rooms.has(room)) {
      for (const { event, message } of recovery.messages) socket.emit(event, message)
    }
    const newest = recovery.messages.at(-1)?.message.id
    last = newest === undefined ? undefined : parseStreamId(newest)
  } finally {
    hold.release((id) => {
      if (last === undefined || typeof id !== 'string') return true
      const parsed = parseStreamId(id)
      return parsed === undefined || compareStreamIds(parsed, last) > 0
    })
  }
  return { recovered: recovery.recovered, missed: recovery.messages.length }
}
