import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { NAMESPACES } from '../protocol/namespaces.js'
import { errorResponses } from './schemas.js'

/** Live sockets per namespace on the instance that answers (the console's view; /metrics has the same gauge). */
const connectionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/connections', {
    schema: {
      tags: ['connections'],
      summary: 'Live sockets per namespace on this instance, and its Engine.IO connections',
      response: { 200: Type.Object({ namespaces: Type.Record(Type.String(), Type.Integer()), connections: Type.Integer() }), ...errorResponses(401, 403) }
    }
  }, async () => ({
    namespaces: Object.fromEntries(NAMESPACES.map((name) => [name, app.io.of(name).sockets.size])),
    connections: app.io.engine.clientsCount
  }))
}

export default connectionRoutes
