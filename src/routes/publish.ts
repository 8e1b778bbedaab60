import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { Principal } from '../auth/principal.js'
import { gatewayError, isGatewayError } from '../errors.js'
import { PublishRequestSchema } from '../messages/publish-request.js'
import { DEFAULT_TENANT } from '../protocol/rooms.js'
import { errorResponses } from './schemas.js'

/** Who publishes, in which tenant (SPEC §14): a key in its own; the root admin in the one it names. */
function publisherIn (principal: Principal, tenant: string | undefined): Principal {
  if (principal.via === 'root') return { ...principal, tenant: tenant ?? DEFAULT_TENANT }
  if (tenant !== undefined && tenant !== principal.tenant) throw gatewayError('FORBIDDEN', 'A key publishes within its own tenant')
  return principal
}

/**
 * Server-side publish: the publish pipeline a socket's relay goes through,
 * to the room's members on every instance, under the same scope, policy and
 * per-key limit.
 */
const publishRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/v1/publish', {
    // The scope check is part of the audited attempt, and comes before the body is validated.
    onRequest: app.requirePublisher,
    schema: {
      tags: ['publish'],
      summary: 'Deliver an event to a room of the caller\'s tenant on every instance',
      body: PublishRequestSchema,
      response: { 202: Type.Object({ id: Type.String() }), ...errorResponses(400, 401, 403, 429, 503) }
    }
  }, async (req, reply) => {
    const principal = publisherIn(req.principal!, req.body.tenant)
    const { namespace, room, event } = req.body
    const refused = app.messages.refusePublish(principal, namespace, room, event)
    if (refused !== undefined) throw refused
    const delivered = await app.messages.deliver(principal, req.body, { bytes: Number(req.headers['content-length'] ?? 0) })
    if (isGatewayError(delivered)) throw delivered
    return await reply.code(202).send({ id: delivered.id })
  })
}

export default publishRoutes
