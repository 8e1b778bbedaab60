import fp from 'fastify-plugin'
import type { Principal } from '../auth/principal.js'
import { gatewayError, type GatewayError } from '../errors.js'
import { isReservedEvent } from '../protocol/events.js'
import { userRoom } from '../protocol/rooms.js'
import { can } from '../policies/engine.js'
import type { PolicyAction } from '../policies/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The one policy check of the gateway (SPEC §3), for every transport:
     * the FORBIDDEN refusal, or undefined when `principal` may perform
     * `action`. Besides the policy it holds the rules no policy can lift:
     * rooms the gateway manages cannot be subscribed to (but the caller's own
     * user room), and event names the gateway reserves cannot be published.
     * Never waits and never throws: it runs on every packet.
     */
    authorize: (principal: Principal, action: PolicyAction, namespace: string, room?: string, event?: string) => GatewayError | undefined
  }
}

/** A room of another subject, or of a key: only the gateway puts sockets in those. */
function managedBySomeoneElse (room: string, sub: string): boolean {
  return room.startsWith('key:') || (room.startsWith('user:') && room !== userRoom(sub))
}

export default fp(async (app) => {
  app.decorate('authorize', (principal: Principal, action: PolicyAction, namespace: string, room?: string, event?: string) => {
    const policy = app.policies.compiled(principal.policyId)
    switch (action) {
      case 'connect':
        return can(policy, principal, 'connect', namespace) ? undefined : gatewayError('FORBIDDEN', `Policy does not allow connect on ${namespace}`)
      case 'subscribe':
        if (room !== undefined && managedBySomeoneElse(room, principal.sub)) return gatewayError('FORBIDDEN', 'That room is managed by the gateway')
        return can(policy, principal, 'subscribe', namespace, room) ? undefined : gatewayError('FORBIDDEN', `Policy does not allow subscribe to ${room ?? namespace}`)
      case 'publish':
        if (event !== undefined && isReservedEvent(event)) return gatewayError('FORBIDDEN', `${event} is reserved`)
        // The root admin has no policy: it is the operator (it never holds a socket: no token is minted from it).
        if (principal.via === 'root') return undefined
        return can(policy, principal, 'publish', namespace, room, event) ? undefined : gatewayError('FORBIDDEN', `Policy does not allow ${event ?? 'publish'} in ${room ?? namespace}`)
      default:
        return gatewayError('FORBIDDEN')
    }
  })
}, { name: 'authorize', fastify: '5.x', dependencies: ['policies'] })
