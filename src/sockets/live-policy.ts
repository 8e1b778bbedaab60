import type { FastifyInstance } from 'fastify'
import { gatewayError } from '../errors.js'
import { can } from '../policies/engine.js'
import { packetRefusal } from './refusal.js'
import { isInternalRoom, type GatewaySocket } from './types.js'

/**
 * Re-applies the socket's policy to what it already holds: the namespace
 * (disconnect when `connect` is gone) and its rooms (left when `subscribe` is
 * gone). Runs on a policy change and on a recovered session.
 */
export function enforcePolicy (app: FastifyInstance, socket: GatewaySocket): void {
  const { principal } = socket.data
  const policy = app.policies.compiled(principal.policyId)
  const namespace = socket.nsp.name
  if (!can(policy, principal, 'connect', namespace)) {
    socket.emit('gateway:error', { ...packetRefusal(gatewayError('FORBIDDEN', `Policy no longer allows ${namespace}`)), event: 'connect' })
    socket.disconnect(true)
    return
  }
  for (const room of socket.rooms) {
    if (isInternalRoom(room, socket)) continue
    if (!can(policy, principal, 'subscribe', namespace, room)) void socket.leave(room)
  }
}
