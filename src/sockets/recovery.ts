import type { FastifyInstance } from 'fastify'
import { can } from '../policies/engine.js'
import { isInternalRoom, type GatewayNamespace, type GatewaySocket } from './types.js'

interface HeldSession { rooms: string[], missedPackets: unknown[][] }

// A session that fails the gate is never asked for: its held state goes after this long.
const HOLD_MS = 30_000

/**
 * Connection-state recovery without a back door. Socket.IO restores a
 * session's rooms and sends its missed packets while creating the socket,
 * before the namespace middleware runs; so the adapter hands it an empty
 * session, and what it held is given back only after the connection gate has
 * passed the new handshake: the rooms the policy still allows, and the missed
 * messages of those rooms.
 */
export function guardRecovery (nsp: GatewayNamespace): (socket: GatewaySocket) => HeldSession | undefined {
  const held = new Map<string, HeldSession>()
  const adapter = nsp.adapter
  const restoreSession = adapter.restoreSession.bind(adapter)
  adapter.restoreSession = async (pid, offset) => {
    const session = await restoreSession(pid, offset)
    if (session == null) return session
    // Keyed by the session's socket id, which the recovered socket takes over.
    held.set(session.sid, { rooms: [...session.rooms], missedPackets: session.missedPackets })
    setTimeout(() => held.delete(session.sid), HOLD_MS).unref()
    return { ...session, rooms: [], missedPackets: [] }
  }
  return (socket) => {
    const session = held.get(socket.id)
    held.delete(socket.id)
    return session
  }
}

/** Gives an authenticated, recovered socket what it may still have: allowed rooms, then their missed messages. */
export function resumeSession (app: FastifyInstance, socket: GatewaySocket, session: HeldSession): void {
  const { principal } = socket.data
  const policy = app.policies.compiled(principal.policyId)
  const namespace = socket.nsp.name
  const rooms = session.rooms.filter((room) => !isInternalRoom(room, socket) && can(policy, principal, 'subscribe', namespace, room))
  void socket.join(rooms)
  const allowed = new Set(rooms)
  for (const packet of session.missedPackets) {
    const payload = packet[1] as { room?: unknown } | undefined
    // Only relayed messages name their room; anything else the session missed is not replayed.
    if (typeof packet[0] === 'string' && typeof payload?.room === 'string' && allowed.has(payload.room)) socket.emit(packet[0], ...packet.slice(1))
  }
}
