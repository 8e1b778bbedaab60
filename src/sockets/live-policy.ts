import type { FastifyInstance } from 'fastify'
import type { GatewayError } from '../errors.js'
import type { ApiKeyRecord } from '../keys/types.js'
import { forceDisconnect } from './refusal.js'
import type { GatewaySocket } from './types.js'
import { joinedRooms, tenantRoom } from '../protocol/rooms.js'

/**
 * Re-applies the socket's policy to what it already holds: the namespace
 * (disconnect when `connect` is gone) and its rooms (left when `subscribe` is
 * gone). Runs when a policy or a key changes.
 */
export function enforcePolicy (app: FastifyInstance, socket: GatewaySocket): void {
  const { principal } = socket.data
  const namespace = socket.nsp.name
  const refused = app.authorize(principal, 'connect', namespace)
  if (refused !== undefined) {
    forceDisconnect(app, socket, refused, 'connect')
    return
  }
  for (const room of joinedRooms(principal.tenant, socket.rooms, socket.id)) {
    if (app.authorize(principal, 'subscribe', namespace, room) !== undefined) void socket.leave(tenantRoom(principal.tenant, room))
  }
}

/**
 * Applies a change of the socket's key (PATCH) to the live connection: its
 * policy, allowlist and publish limit follow the key's record, then the
 * policy is re-applied. A revoked key is left to `disconnectKey`, which closes
 * and counts its sockets on every instance (closing them here first would
 * race that count).
 */
export function applyKeyChange (app: FastifyInstance, socket: GatewaySocket, key: ApiKeyRecord | undefined): void {
  if (key === undefined || key.revokedAt !== null) return
  try {
    app.assertKeyUsable(key, socket.data.ip)
  } catch (err) {
    forceDisconnect(app, socket, err as GatewayError)
    return
  }
  socket.data.principal = { ...socket.data.principal, policyId: key.policyId, rateLimit: key.rateLimit, maxConnections: key.maxConnections }
  enforcePolicy(app, socket)
}
