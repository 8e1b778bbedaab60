import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { gatewayError } from '../errors.js'
import type { ApiKeyRecord, KeyPatch } from '../keys/types.js'
import { isCidr } from '../net/ip.js'
import { TENANT_PATTERN } from '../protocol/rooms.js'
import { errorResponses, IdParams, NullableTimestamp, PageQuery, pageLimit, pageOf, ScopeSchema, Strict, Timestamp } from './schemas.js'

const RateLimitSchema = Strict({
  max: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }),
  windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400 })
})

const KeyFields = {
  name: Type.String({ minLength: 1, maxLength: 128 }),
  scopes: Type.Array(ScopeSchema, { uniqueItems: true, maxItems: 3 }),
  policyId: Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()]),
  allowedIps: Type.Array(Type.String({ minLength: 2, maxLength: 64 }), { maxItems: 100 }),
  rateLimit: Type.Union([RateLimitSchema, Type.Null()]),
  maxConnections: Type.Union([Type.Integer({ minimum: 1, maximum: 10_000_000 }), Type.Null()]),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
}

const EditableKeyFields = {
  name: KeyFields.name,
  scopes: Type.Optional(KeyFields.scopes),
  policyId: Type.Optional(KeyFields.policyId),
  allowedIps: Type.Optional(KeyFields.allowedIps),
  rateLimit: Type.Optional(KeyFields.rateLimit),
  maxConnections: Type.Optional(KeyFields.maxConnections),
  expiresAt: Type.Optional(KeyFields.expiresAt)
}
const Tenant = Type.String({ pattern: TENANT_PATTERN, description: 'SPEC §14: fixed at creation, default "default"' })
const CreateKeyBody = Strict({ ...EditableKeyFields, tenant: Type.Optional(Tenant) })
// A key's tenant never changes: PATCH refuses it like any unknown field.
const PatchKeyBody = Type.Partial(Strict(EditableKeyFields), { additionalProperties: false, minProperties: 1 })

/** What the API shows of a key: never its secret or hash (the response schema enforces it). */
const KeyView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  tenant: Type.String(),
  scopes: Type.Array(Type.String()),
  policyId: Type.Union([Type.String(), Type.Null()]),
  allowedIps: Type.Array(Type.String()),
  rateLimit: Type.Union([Type.Object({ max: Type.Integer(), windowSeconds: Type.Integer() }), Type.Null()]),
  maxConnections: Type.Union([Type.Integer(), Type.Null()]),
  expiresAt: NullableTimestamp,
  revokedAt: NullableTimestamp,
  createdAt: Timestamp,
  lastUsedAt: NullableTimestamp
})
const KeyWithSecret = Type.Intersect([KeyView, Type.Object({ apiKey: Type.String({ description: 'The full key: shown once' }) })])

const AuditRow = Type.Object({
  id: Type.String(),
  at: Timestamp,
  keyId: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  transport: Type.String(),
  namespace: Type.Union([Type.String(), Type.Null()]),
  outcome: Type.String(),
  reason: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  count: Type.Integer({ minimum: 1, description: 'Attempts this row stands for: 1, or a summary of refusals made before any credential was read (rate limit, anomaly block) from one ip in one window' })
})
export const AuditPage = pageOf(AuditRow)

function view (key: ApiKeyRecord): Omit<ApiKeyRecord, 'secretHash' | 'previousSecretHash' | 'previousExpiresAt' | 'secretGeneration'> {
  const { secretHash: _s, previousSecretHash: _p, previousExpiresAt: _e, secretGeneration: _g, ...visible } = key
  return visible
}

/**
 * An RFC 3339 time as UTC ISO text PostgreSQL reads back. The schema's
 * `date-time` format lets through what timestamptz refuses (year 0000, a +23:59
 * offset), which would otherwise end as a 500.
 */
function normalizeTime (value: string): string {
  const ms = Date.parse(value)
  const year = Number.isFinite(ms) ? new Date(ms).getUTCFullYear() : NaN
  if (!(year >= 1 && year <= 9999)) throw gatewayError('VALIDATION_FAILED', `body/expiresAt: "${value.slice(0, 64)}" is not a storable time (years 0001 to 9999)`)
  return new Date(ms).toISOString()
}

/** Checks what the schema cannot (CIDRs, the policy exists, a storable time) and returns the body with its time normalised. */
async function checkReferences<T extends KeyPatch> (app: Parameters<FastifyPluginAsyncTypebox>[0], body: T): Promise<T> {
  const badIp = body.allowedIps?.find((ip) => !isCidr(ip))
  if (badIp !== undefined) throw gatewayError('VALIDATION_FAILED', `body/allowedIps: "${badIp}" is not an IP address or CIDR range`)
  if (typeof body.policyId === 'string' && await app.policies.get(body.policyId) === undefined) {
    throw gatewayError('VALIDATION_FAILED', `body/policyId: no policy ${body.policyId}`)
  }
  return typeof body.expiresAt === 'string' ? { ...body, expiresAt: normalizeTime(body.expiresAt) } : body
}

const keyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const notFound = (): Error => gatewayError('NOT_FOUND', 'No such key')

  app.post('/v1/keys', {
    schema: { tags: ['keys'], summary: 'Issue a key (its full secret is in this response only)', body: CreateKeyBody, response: { 201: KeyWithSecret, ...errorResponses(400, 401, 403) } }
  }, async (req, reply) => {
    const { record, apiKey } = await app.keys.create(await checkReferences(app, req.body))
    return await reply.code(201).send({ ...view(record), apiKey })
  })

  app.get('/v1/keys', {
    schema: { tags: ['keys'], querystring: Strict({ ...PageQuery, tenant: Type.Optional(Tenant) }), response: { 200: pageOf(KeyView), ...errorResponses(400, 401, 403) } }
  }, async (req) => {
    const page = await app.keys.list(pageLimit(req.query.limit), req.query.cursor, req.query.tenant)
    return { items: page.items.map(view), nextCursor: page.nextCursor }
  })

  app.get('/v1/keys/:id', {
    schema: { tags: ['keys'], params: IdParams, response: { 200: KeyView, ...errorResponses(401, 403, 404) } }
  }, async (req) => {
    const key = await app.keys.get(req.params.id)
    if (key === undefined) throw notFound()
    return view(key)
  })

  app.patch('/v1/keys/:id', {
    schema: { tags: ['keys'], params: IdParams, body: PatchKeyBody, response: { 200: KeyView, ...errorResponses(400, 401, 403, 404) } }
  }, async (req) => {
    const key = await app.keys.update(req.params.id, await checkReferences(app, req.body))
    if (key === undefined) throw notFound()
    return view(key)
  })

  app.post('/v1/keys/:id/revoke', {
    schema: {
      tags: ['keys'],
      params: IdParams,
      response: { 200: Type.Object({ revokedAt: Timestamp, disconnected: Type.Integer(), incomplete: Type.Optional(Type.Boolean()) }), ...errorResponses(401, 403, 404) }
    }
  }, async (req) => {
    const key = await app.keys.revoke(req.params.id)
    if (key === undefined || key.revokedAt === null) throw notFound()
    app.alerts.raise({ kind: 'key_revoked', keyId: key.id })
    const { disconnected, incomplete } = await app.disconnectKey(key.id)
    return { revokedAt: key.revokedAt.toISOString(), disconnected, ...(incomplete ? { incomplete } : {}) }
  })

  app.post('/v1/keys/:id/rotate', {
    // The body is optional (SPEC §4): none at all means gracePeriodSeconds 0, but a JSON null is still refused.
    preValidation: async (req) => { if (req.body === undefined) req.body = {} },
    schema: {
      tags: ['keys'],
      summary: 'Issue a new secret; the old one, and the tokens minted before, work for gracePeriodSeconds more',
      params: IdParams,
      body: Strict({ gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86_400 })) }),
      response: { 200: KeyWithSecret, ...errorResponses(400, 401, 403, 404, 409) }
    }
  }, async (req) => {
    const existing = await app.keys.get(req.params.id)
    if (existing === undefined) throw notFound()
    if (existing.revokedAt !== null) throw gatewayError('CONFLICT', 'A revoked key cannot be rotated')
    const rotated = await app.keys.rotate(req.params.id, req.body.gracePeriodSeconds ?? 0)
    if (rotated === undefined) throw notFound()
    return { ...view(rotated.record), apiKey: rotated.apiKey }
  })

  app.get('/v1/keys/:id/usage', {
    schema: {
      tags: ['keys', 'audit'],
      params: IdParams,
      querystring: Strict(PageQuery),
      response: { 200: Type.Intersect([AuditPage, Type.Object({ counts: Type.Object({ allowed: Type.Integer(), refused: Type.Integer() }, { description: 'Attempts by outcome over all the key rows (sums of count)' }) })]), ...errorResponses(400, 401, 403, 404) }
    }
  }, async (req) => {
    const key = await app.keys.get(req.params.id)
    if (key === undefined) throw notFound()
    const [page, counts] = await Promise.all([
      app.auditQuery.list({ keyId: key.id }, pageLimit(req.query.limit), req.query.cursor),
      app.auditQuery.counts(key.id)
    ])
    return { ...page, counts }
  })
}

export default keyRoutes
