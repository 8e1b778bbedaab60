import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { gatewayError } from '../errors.js'
import { MAX_POLICY_PATTERN_CHARS, PolicyRulesSchema, policySizeRefusal, type PolicyRule } from '../policies/types.js'
import { errorResponses, IdParams, PageQuery, pageLimit, pageOf, Strict, Timestamp } from './schemas.js'

const PolicyBody = Strict({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  rules: PolicyRulesSchema
})
const PolicyView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  rules: PolicyRulesSchema,
  createdAt: Timestamp,
  updatedAt: Timestamp
})

const SIZE_NOTE = `A policy holds at most ${MAX_POLICY_PATTERN_CHARS} pattern characters (namespaces, rooms and events of all rules); a bigger one is 400 VALIDATION_FAILED.`

/** The schema bounds each list; this bounds their sum, which is what compiling and checking cost. */
function assertPolicySize (rules: readonly PolicyRule[]): void {
  const refusal = policySizeRefusal(rules)
  if (refusal !== undefined) throw gatewayError('VALIDATION_FAILED', refusal)
}

const policyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const notFound = (): Error => gatewayError('NOT_FOUND', 'No such policy')

  app.post('/v1/policies', {
    schema: { tags: ['policies'], description: SIZE_NOTE, body: PolicyBody, response: { 201: PolicyView, ...errorResponses(400, 401, 403, 409) } }
  }, async (req, reply) => {
    assertPolicySize(req.body.rules)
    return await reply.code(201).send(await app.policies.create(req.body))
  })

  app.get('/v1/policies', {
    schema: { tags: ['policies'], querystring: Strict(PageQuery), response: { 200: pageOf(PolicyView), ...errorResponses(400, 401, 403) } }
  }, async (req) => await app.policies.list(pageLimit(req.query.limit), req.query.cursor))

  app.get('/v1/policies/:id', {
    schema: { tags: ['policies'], params: IdParams, response: { 200: PolicyView, ...errorResponses(401, 403, 404) } }
  }, async (req) => {
    const policy = await app.policies.get(req.params.id)
    if (policy === undefined) throw notFound()
    return policy
  })

  app.put('/v1/policies/:id', {
    schema: { tags: ['policies'], summary: 'Replace a policy; live connections follow within a second', description: SIZE_NOTE, params: IdParams, body: PolicyBody, response: { 200: PolicyView, ...errorResponses(400, 401, 403, 404, 409) } }
  }, async (req) => {
    assertPolicySize(req.body.rules)
    const policy = await app.policies.replace(req.params.id, req.body)
    if (policy === undefined) throw notFound()
    return policy
  })

  app.delete('/v1/policies/:id', {
    schema: { tags: ['policies'], params: IdParams, response: { 204: Type.Null(), ...errorResponses(401, 403, 404, 409) } }
  }, async (req, reply) => {
    if (!await app.policies.remove(req.params.id)) throw notFound()
    return await reply.code(204).send(null)
  })
}

export default policyRoutes
