import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { gatewayError } from '../errors.js'
import { NAMESPACES } from '../protocol/namespaces.js'
import { DEFAULT_TENANT, ROOM_NAME_PATTERN, TENANT_PATTERN, tenantRoom } from '../protocol/rooms.js'
import { errorResponses, Strict } from './schemas.js'

const Snapshot = Type.Object({
  count: Type.Integer({ description: 'Distinct subjects in the room across every instance (exact)' }),
  members: Type.Array(Type.Object({ sub: Type.String(), connections: Type.Integer() }), { description: 'At most 1,000' }),
  truncated: Type.Boolean()
})

/** SPEC §11: who is in a room, for an operator (a client asks with the `presence` event). */
const presenceRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/presence', {
    schema: {
      tags: ['presence'],
      summary: 'Distinct subjects in a room, with their connections, across every instance',
      querystring: Strict({
        namespace: Type.Union(NAMESPACES.map((n) => Type.Literal(n))),
        room: Type.String({ minLength: 1, maxLength: 256, pattern: ROOM_NAME_PATTERN }),
        tenant: Type.Optional(Type.String({ pattern: TENANT_PATTERN, description: 'SPEC §14, default "default"' }))
      }),
      response: { 200: Snapshot, ...errorResponses(400, 401, 403, 503) }
    }
  }, async (req) => {
    const { namespace, room, tenant = DEFAULT_TENANT } = req.query
    if (!app.presence.tracks(namespace)) throw gatewayError('VALIDATION_FAILED', `${namespace} keeps no presence (PRESENCE_NAMESPACES)`)
    return await app.presence.members(namespace, tenantRoom(tenant, room))
  })
}

export default presenceRoutes
