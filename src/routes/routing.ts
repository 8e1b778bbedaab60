import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { gatewayError } from '../errors.js'
import { NOTIFY_ONLY_EVENTS, RouteDefinitionSchema, type RouteDefinition } from '../routing/types.js'
import { errorResponses, IdParams, PageQuery, pageLimit, pageOf, Strict, Timestamp } from './schemas.js'

const RouteView = Type.Object({
  id: Type.String(),
  ...RouteDefinitionSchema.properties,
  createdAt: Timestamp,
  updatedAt: Timestamp
})
// The signing secret: in the answer that creates or rotates a route, never again.
const RouteWithSecret = Type.Object({ ...RouteView.properties, secret: Type.String({ description: 'whsec_…: shown once' }) })

const SECRET_NOTE = 'The answer holds the route\'s signing secret (`whsec_…`), shown this once: backends verify calls with it (Standard Webhooks).'

/** What the schema cannot say: lifecycle events a backend cannot refuse need notify mode; upstream URLs must parse and carry no credentials. */
function assertRouteValid (route: RouteDefinition): void {
  if (route.mode === 'request') {
    const notifyOnly = route.events.filter((event) => NOTIFY_ONLY_EVENTS.has(event))
    if (notifyOnly.length > 0) throw gatewayError('VALIDATION_FAILED', `${notifyOnly.join(', ')} can only be routed in notify mode`)
  }
  let url: URL
  try {
    url = new URL(route.upstream.url)
  } catch {
    throw gatewayError('VALIDATION_FAILED', 'upstream.url is not a valid URL')
  }
  if (url.username !== '' || url.password !== '') throw gatewayError('VALIDATION_FAILED', 'upstream.url may not carry credentials: calls are signed instead')
  if (url.hash !== '') throw gatewayError('VALIDATION_FAILED', 'upstream.url may not have a fragment')
}

const routingRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const notFound = (): Error => gatewayError('NOT_FOUND', 'No such route')
  const tags = ['routes']

  app.post('/v1/routes', {
    schema: { tags, summary: 'Route events of a namespace to a backend service', description: SECRET_NOTE, body: RouteDefinitionSchema, response: { 201: RouteWithSecret, ...errorResponses(400, 401, 403, 409) } }
  }, async (req, reply) => {
    assertRouteValid(req.body)
    const { record, secret } = await app.routeStore.create(req.body)
    return await reply.code(201).send({ ...record, secret })
  })

  app.get('/v1/routes', {
    schema: { tags, querystring: Strict(PageQuery), response: { 200: pageOf(RouteView), ...errorResponses(400, 401, 403) } }
  }, async (req) => await app.routeStore.list(pageLimit(req.query.limit), req.query.cursor))

  app.get('/v1/routes/:id', {
    schema: { tags, params: IdParams, response: { 200: RouteView, ...errorResponses(401, 403, 404) } }
  }, async (req) => {
    const route = await app.routeStore.get(req.params.id)
    if (route === undefined) throw notFound()
    return route
  })

  app.put('/v1/routes/:id', {
    schema: { tags, summary: 'Replace a route (its secret stays); every instance follows within a second', params: IdParams, body: RouteDefinitionSchema, response: { 200: RouteView, ...errorResponses(400, 401, 403, 404, 409) } }
  }, async (req) => {
    assertRouteValid(req.body)
    const route = await app.routeStore.replace(req.params.id, req.body)
    if (route === undefined) throw notFound()
    return route
  })

  app.delete('/v1/routes/:id', {
    schema: { tags, params: IdParams, response: { 204: Type.Null(), ...errorResponses(401, 403, 404) } }
  }, async (req, reply) => {
    if (!await app.routeStore.remove(req.params.id)) throw notFound()
    return await reply.code(204).send(null)
  })

  app.post('/v1/routes/:id/rotate', {
    // The body is optional, as for key rotation: none at all means gracePeriodSeconds 0.
    preValidation: async (req) => { if (req.body === undefined) req.body = {} },
    schema: {
      tags,
      summary: 'Issue a new signing secret; calls carry both signatures for gracePeriodSeconds',
      description: SECRET_NOTE,
      params: IdParams,
      body: Strict({ gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86_400 })) }),
      response: { 200: RouteWithSecret, ...errorResponses(400, 401, 403, 404) }
    }
  }, async (req) => {
    const rotated = await app.routeStore.rotate(req.params.id, req.body.gracePeriodSeconds ?? 0)
    if (rotated === undefined) throw notFound()
    return { ...rotated.record, secret: rotated.secret }
  })
}

export default routingRoutes
