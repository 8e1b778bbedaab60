import type { GatewayNamespace, GatewaySocket } from './types.js'

/** A broadcast held back from one socket: its message id, and the write that delivers it. */
interface HeldBroadcast { id: unknown, deliver: () => void }

/** Broadcasts to one room held back from one socket while it is replayed what it missed. */
export interface Hold {
  /**
   * Delivers what was held whose id `isNew` says the replay did not carry,
   * in arrival order, then lets the room's broadcasts through again, less
   * those `isNew` refuses for a while longer (see AFTER_RELEASE_MS).
   */
  release: (isNew: (id: unknown) => boolean) => void
}

/** One socket's room while it is replayed (`queue`), then while late copies of the replay may still arrive (`isNew`). */
interface RoomHold { queue?: HeldBroadcast[], isNew?: (id: unknown) => boolean }

// A replay that has not finished by this many held broadcasts is cut short: what is held is delivered.
const MAX_HELD = 10_000
// A message another instance kept before the replay read it may reach this instance after the replay is
// out (its pub/sub delivery lags its XADD): for this long the replayed ids are still refused.
const AFTER_RELEASE_MS = 10_000

interface AdapterInternals {
  _encode: (packet: { data?: unknown[] }, options: unknown) => unknown
  apply: (opts: { rooms: Set<string> }, callback: (socket: GatewaySocket) => void) => void
}

/**
 * The handover from a replay to live messages (SPEC §12: in order, none
 * twice). A rejoining socket is put in its room at once and what the room's
 * history has since `since` is read after that, so no message falls between
 * the two; the room's broadcasts reaching the socket meanwhile (from any
 * instance) are held here, and on release only those the replay did not
 * carry are delivered, after it.
 *
 * Socket.IO has no outgoing middleware: this wraps the namespace adapter's
 * `_encode` (to see the packet of each broadcast, local or from another
 * instance) and `apply` (where the adapter writes it to each socket).
 * Holding nothing costs one comparison per broadcast.
 */
export function holdableBroadcasts (nsp: GatewayNamespace): (socket: GatewaySocket, room: string) => Hold {
  const adapter = nsp.adapter as unknown as AdapterInternals
  const holds = new Map<string, Map<string, RoomHold>>()
  let broadcasting: { data?: unknown[] } | undefined

  const encode = adapter._encode.bind(adapter)
  adapter._encode = (packet, options) => {
    broadcasting = packet
    return encode(packet, options)
  }
  const apply = adapter.apply.bind(adapter)
  adapter.apply = (opts, callback) => {
    // Only a broadcast encodes right before it applies; other uses of apply (fetch, join, disconnect) pass through.
    const packet = broadcasting
    broadcasting = undefined
    if (holds.size === 0 || packet === undefined) return apply(opts, callback)
    apply(opts, (socket) => {
      const rooms = holds.get(socket.id)
      const hold = rooms === undefined ? undefined : firstHeld(rooms, opts.rooms)
      if (hold === undefined) return callback(socket)
      const id = (packet.data?.[1] as { id?: unknown } | undefined)?.id
      if (hold.queue !== undefined && hold.queue.length < MAX_HELD) hold.queue.push({ id, deliver: () => { callback(socket) } })
      else if (hold.isNew === undefined || hold.isNew(id)) callback(socket)
    })
  }

  const forget = (socketId: string, room: string, hold: RoomHold): void => {
    const rooms = holds.get(socketId)
    if (rooms?.get(room) === hold) rooms.delete(room)
    if (rooms !== undefined && rooms.size === 0) holds.delete(socketId)
  }

  return (socket, room) => {
    let rooms = holds.get(socket.id)
    if (rooms === undefined) holds.set(socket.id, rooms = new Map())
    const hold: RoomHold = { queue: [] }
    rooms.set(room, hold)
    return {
      release (isNew) {
        const queue = hold.queue
        if (queue === undefined) return
        hold.queue = undefined
        hold.isNew = isNew
        if (socket.connected) for (const held of queue) if (isNew(held.id)) held.deliver()
        setTimeout(() => { forget(socket.id, room, hold) }, AFTER_RELEASE_MS).unref()
      }
    }
  }
}

function firstHeld (held: Map<string, RoomHold>, rooms: Set<string>): RoomHold | undefined {
  for (const room of rooms) {
    const hold = held.get(room)
    if (hold !== undefined) return hold
  }
  return undefined
}
