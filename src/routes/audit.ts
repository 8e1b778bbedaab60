import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { AuditPage } from './keys.js'
import { errorResponses, PageQuery, pageLimit, Strict } from './schemas.js'

const auditRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/audit', {
    schema: {
      tags: ['audit'],
      summary: 'Authentication attempts, newest first',
      description: 'One row per attempt (count 1), except refusals made before any credential was read (RATE_LIMITED, TEMPORARILY_BLOCKED, no key id): one summary row per ip, transport, namespace, reason and second, with count. Past 1,000 addresses in one second the rest fold into ip "*".',
      querystring: Strict({
        ...PageQuery,
        keyId: Type.Optional(Type.String({ maxLength: 64 })),
        outcome: Type.Optional(Type.Union([Type.Literal('allowed'), Type.Literal('refused')])),
        ip: Type.Optional(Type.String({ maxLength: 64 })),
        since: Type.Optional(Type.String({ format: 'date-time' }))
      }),
      response: { 200: AuditPage, ...errorResponses(400, 401, 403) }
    }
  }, async (req) => {
    const { limit, cursor, ...filter } = req.query
    return await app.auditQuery.list(filter, pageLimit(limit), cursor)
  })
}

export default auditRoutes
