import type { FastifyInstance } from 'fastify'
import type { SocketState } from './types.js'
import type { GatewayNamespace, GatewaySocket } from './types.js'
import { joinedRooms, tenantRoom } from '../protocol/rooms.js'

interface HeldSession { rooms: string[], missedPackets: unknown[][], keyId: string | undefined, sub: string | undefined }

// A session that fails the gate is never asked for: its held state goes after this long.
const HOLD_MS = 30_000

/**
 * What one namespace keeps for recovery, at most: Socket.IO stores every
 * packet sent without an ack (every relay, empty rooms included) for the
 * whole recovery window, so without a bound one client could make the
 * gateway hold whatever it sends for two minutes.
 */
export interface RecoveryBounds { maxPackets: number, maxBytes: number }
// Counted in frame bytes, but the store holds parsed objects (measured: ~8.5 KB a relayed packet, ~2.6 KB a
// refusal notice under fuzzing): the packet bound is what keeps the heap in check.
export const RECOVERY_BOUNDS: RecoveryBounds = { maxPackets: 2_000, maxBytes: 16 * 1024 * 1024 }
// A packet whose size the publish pipeline did not tell (a gateway notice) is counted as this many bytes.
const DEFAULT_PACKET_BYTES = 1024

interface StoredPacket { id: string }
interface SessionAwareAdapter { packets?: StoredPacket[] }

/**
 * Connection-state recovery without a back door. Socket.IO restores a
 * session's rooms and sends its missed packets while creating the socket,
 * before the namespace middleware runs; so the adapter hands it an empty
 * session, and what it held is given back only after the connection gate has
 * passed the new handshake: the rooms the policy still allows, and the missed
 * messages of those rooms, and only to the same key and subject.
 *
 * `bytesOf` tells the size of a message being broadcast (the publish
 * pipeline knows it from the client's frame); returns the function that
 * takes a recovered socket's held session.
 */
export function guardRecovery (nsp: GatewayNamespace, bytesOf: (message: unknown) => number | undefined, bounds: RecoveryBounds = RECOVERY_BOUNDS): (socket: GatewaySocket) => HeldSession | undefined {
  const held = new Map<string, HeldSession>()
  const adapter = nsp.adapter
  const restoreSession = adapter.restoreSession.bind(adapter)
  adapter.restoreSession = async (pid, offset) => {
    const session = await restoreSession(pid, offset)
    if (session == null) return session
    const owner = (session.data as Partial<SocketState> | undefined)?.principal
    // Keyed by the session's socket id, which the recovered socket takes over.
    held.set(session.sid, { rooms: [...session.rooms], missedPackets: session.missedPackets, keyId: owner?.keyId, sub: owner?.sub })
    setTimeout(() => held.delete(session.sid), HOLD_MS).unref()
    return { ...session, rooms: [], missedPackets: [] }
  }
  const stored = (adapter as unknown as SessionAwareAdapter).packets
  if (stored !== undefined) boundStoredPackets(adapter, stored, bounds, (data) => Math.max(bytesOf(data[1]) ?? 0, DEFAULT_PACKET_BYTES))
  return (socket) => {
    const session = held.get(socket.id)
    held.delete(socket.id)
    return session
  }
}

/** Drops the oldest stored packets once the namespace holds more than its bounds (a tenth at a time: splicing is O(n)). */
function boundStoredPackets (adapter: GatewayNamespace['adapter'], packets: StoredPacket[], bounds: RecoveryBounds, sizeOf: (data: unknown[]) => number): void {
  const sizes: number[] = []
  let bytes = 0
  const broadcast = adapter.broadcast.bind(adapter)
  adapter.broadcast = (packet, opts) => {
    const before = packets.length
    broadcast(packet, opts)
    if (packets.length === before) return
    const size = sizeOf(packet.data as unknown[])
    sizes.push(size)
    bytes += size
    // The adapter's own sweep drops expired packets from the front too: keep the sizes aligned with what is left.
    while (sizes.length > packets.length) bytes -= sizes.shift() as number
    if (packets.length <= bounds.maxPackets && bytes <= bounds.maxBytes) return
    let drop = Math.max(1, Math.ceil(packets.length / 10))
    while (bytes - sumFirst(sizes, drop) > bounds.maxBytes && drop < packets.length) drop = Math.min(packets.length, drop * 2)
    packets.splice(0, drop)
    for (const dropped of sizes.splice(0, drop)) bytes -= dropped
  }
}

function sumFirst (values: number[], n: number): number {
  let sum = 0
  for (let i = 0; i < n && i < values.length; i++) sum += values[i]
  return sum
}

/** Gives an authenticated, recovered socket what it may still have: allowed rooms, then their missed messages. */
export function resumeSession (app: FastifyInstance, socket: GatewaySocket, session: HeldSession): void {
  const { principal } = socket.data
  // A session id presented under another key or subject recovers nothing: the socket starts fresh.
  if (session.keyId !== principal.keyId || session.sub !== principal.sub) return
  const namespace = socket.nsp.name
  const rooms = joinedRooms(principal.tenant, session.rooms, socket.id).filter((room) => app.authorize(principal, 'subscribe', namespace, room) === undefined)
  void socket.join(rooms.map((room) => tenantRoom(principal.tenant, room)))
  const allowed = new Set(rooms)
  for (const packet of session.missedPackets) {
    const payload = packet[1] as { room?: unknown } | undefined
    // Only relayed messages name their room; anything else the session missed is not replayed.
    if (typeof packet[0] === 'string' && typeof payload?.room === 'string' && allowed.has(payload.room)) socket.emit(packet[0], ...packet.slice(1))
  }
}
