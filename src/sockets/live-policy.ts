import type { FastifyInstance } from 'fastify'
import { gatewayError, type GatewayError } from '../errors.js'
import type { ApiKeyRecord } from '../keys/types.js'
import { can } from '../policies/engine.js'
import { keyRoom } from '../plugins/io.js'
import { forceDisconnect } from './refusal.js'
import { isInternalRoom, type GatewaySocket } from './types.js'

/**
 * Re-applies the socket's policy to what it already holds: the namespace
 * (disconnect when `connect` is gone) and its rooms (left when `subscribe` is
 * gone). Runs when a policy or a key changes.
 */
export function enforcePolicy (app: FastifyInstance, socket: GatewaySocket): void {
  const { principal } = socket.data
  const policy = app.policies.compiled(principal.policyId)
  const namespace = socket.nsp.name
  if (!can(policy, principal, 'connect', namespace)) {
    forceDisconnect(app, socket, gatewayError('FORBIDDEN', `Policy no longer allows ${namespace}`), 'connect')
    return
  }
  const ownKeyRoom = keyRoom(principal.keyId)
  for (const room of socket.rooms) {
    // A recovered session may carry the key room of the credential it had before: only the current one is kept.
    if (room.startsWith('key:') && room !== ownKeyRoom) void socket.leave(room)
    else if (isInternalRoom(room, socket)) continue
    else if (!can(policy, principal, 'subscribe', namespace, room)) void socket.leave(room)
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
  if (key.expiresAt !== null && key.expiresAt.getTime() <= Date.now()) {
    forceDisconnect(app, socket, gatewayError('KEY_EXPIRED'))
    return
  }
  try {
    app.checkIp(key.allowedIps, socket.data.ip)
  } catch (err) {
    forceDisconnect(app, socket, err as GatewayError)
    return
  }
  socket.data.principal = { ...socket.data.principal, policyId: key.policyId, allowedIps: key.allowedIps }
  socket.data.keyRateLimit = key.rateLimit
  enforcePolicy(app, socket)
}
