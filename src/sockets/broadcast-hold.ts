import type { GatewayNamespace, GatewaySocket } from './types.js'

/** A broadcast held back from one socket: its message id, and the write that delivers it. */
interface HeldBroadcast { id: unknown, deliver: () => void }

/** Broadcasts to one room held back from one socket while it is replayed what it missed. */
export interface Hold {
  /**
   * Delivers what was held whose id `isNew` says the replay did not carry,
   * in arrival order, and lets the room's broadcasts through again.
   */
  release: (isNew: (id: unknown) => boolean) => void
}

// A replay that has not finished by this many held broadcasts is cut short: what is held is delivered.
const MAX_HELD = 10_000

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
  const holds = new Map<string, Map<string, HeldBroadcast[]>>()
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
      const held = holds.get(socket.id)
      const queue = held === undefined ? undefined : firstHeld(held, opts.rooms)
      if (queue === undefined || queue.length >= MAX_HELD) return callback(socket)
      queue.push({ id: (packet.data?.[1] as { id?: unknown } | undefined)?.id, deliver: () => { callback(socket) } })
    })
  }

  return (socket, room) => {
    let rooms = holds.get(socket.id)
    if (rooms === undefined) holds.set(socket.id, rooms = new Map())
    const queue: HeldBroadcast[] = []
    rooms.set(room, queue)
    let released = false
    return {
      release (isNew) {
        if (released) return
        released = true
        if (rooms.get(room) === queue) rooms.delete(room)
        if (rooms.size === 0 && holds.get(socket.id) === rooms) holds.delete(socket.id)
        if (!socket.connected) return
        for (const held of queue) if (isNew(held.id)) held.deliver()
      }
    }
  }
}

function firstHeld (held: Map<string, HeldBroadcast[]>, rooms: Set<string>): HeldBroadcast[] | undefined {
  for (const room of rooms) {
    const queue = held.get(room)
    if (queue !== undefined) return queue
  }
  return undefined
}
