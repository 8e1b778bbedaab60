import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { assertNamespaceAllowed } from '../auth/principal.js'
import { Type } from '@sinclair/typebox'
import { NAMESPACES } from '../protocol/namespaces.js'
import { relayedMessage } from '../sockets/protocol.js'
import { publishRefusal } from '../sockets/publish-rule.js'
import { errorResponses, Strict } from './schemas.js'

const PublishBody = Strict({
  namespace: Type.Union(NAMESPACES.map((n) => Type.Literal(n))),
  room: Type.String({ minLength: 1, maxLength: 256 }),
  event: Type.String({ minLength: 1, maxLength: 128 }),
  data: Type.Unknown()
})

/**
 * Server-side publish: the same delivery as a socket's relay, to the room's
 * members on every instance, under the same scope, policy and per-key limit.
 */
const publishRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/v1/publish', {
    // The scope check is part of the audited attempt, and comes before the body is validated.
    onRequest: app.requirePublisher,
    schema: {
      tags: ['publish'],
      summary: 'Deliver an event to a room on every instance',
      body: PublishBody,
      response: { 202: Type.Object({ id: Type.String() }), ...errorResponses(400, 401, 403, 429, 503) }
    }
  }, async (req, reply) => {
    const principal = req.principal!
    const { namespace, room, event, data } = req.body
    assertNamespaceAllowed(principal, namespace)
    const refused = publishRefusal(app.policies.compiled(principal.policyId), principal, namespace, room, event)
    if (refused !== undefined) throw refused
    if (principal.rateLimit !== null) {
      const limited = await app.takePublishQuota(principal.keyId, principal.rateLimit)
      if (limited !== undefined) throw limited
    }
    const message = relayedMessage(room, principal.sub, data)
    app.io.of(namespace).to(room).emit(event, message)
    return await reply.code(202).send({ id: message.id })
  })
}

export default publishRoutes
