import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { ipRateKey } from '../plugins/rate-limit.js'
import { httpAttempt, requestCredential } from '../plugins/gatekeeper.js'
import { isUnreadableBody } from '../net/json-body.js'
import { errorResponses, Strict } from './schemas.js'

const NAMESPACE = Type.String({ pattern: '^/[A-Za-z0-9_-]{1,64}$' })

const TokenBody = Strict({
  apiKey: Type.Optional(Type.String({ maxLength: 1024 })),
  ttl: Type.Optional(Type.Integer({ minimum: 1 })),
  namespaces: Type.Optional(Type.Array(NAMESPACE, { minItems: 1, maxItems: 16, uniqueItems: true })),
  sub: Type.Optional(Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\s]+$' }))
})

const TokenResponse = Type.Object({
  accessToken: Type.String(),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer(),
  expiresAt: Type.String({ format: 'date-time' })
})

const authRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { token: tokenRate } = app.config.rateLimit

  app.post('/auth/token', {
    config: { rateLimit: { max: tokenRate.max, timeWindow: tokenRate.windowMs, keyGenerator: ipRateKey('token') } },
    // Authentication comes after the rate limit (onRequest) and before the body is looked at: a key in the
    // X-API-Key header is checked before parsing, a key in the body before validation.
    preParsing: async (req) => {
      const fromHeader = requestCredential(req)
      if (fromHeader?.kind === 'key') req.principal = await app.admit(fromHeader, httpAttempt(req))
    },
    preValidation: async (req) => {
      // No body at all is the common case: validate it as an empty object.
      if (req.body === undefined) req.body = {}
      if (req.principal !== null) return
      const fromBody = (req.body as { apiKey?: unknown } | null)?.apiKey
      // Only an API key mints tokens: a bearer token here is refused like a missing key.
      req.principal = await app.admit(typeof fromBody === 'string' ? { kind: 'key', value: fromBody } : undefined, httpAttempt(req))
    },
    // A body that cannot be parsed carries no credential: without a header key that is 401 (SPEC §4), not 400.
    // A body over BODY_LIMIT is 413 whatever the credentials (SPEC §2).
    errorHandler: async (err, req) => {
      if (req.principal === null && err.validation === undefined && isUnreadableBody(err)) await app.admit(undefined, httpAttempt(req))
      throw err
    },
    schema: {
      tags: ['auth'],
      summary: 'Exchange an API key for a short-lived access token',
      body: TokenBody,
      response: { 200: TokenResponse, ...errorResponses(400, 401, 403, 429, 503) }
    }
  }, async (req) => {
    const { ttl, namespaces, sub } = req.body
    return await app.issueToken(req.principal!, { ttl, namespaces, sub })
  })

  app.post('/auth/revoke', {
    onRequest: app.requireCredential,
    schema: { tags: ['auth'], summary: 'Revoke the bearer token of this request (logout)', response: { 204: Type.Null(), ...errorResponses(401, 503) } }
  }, async (req, reply) => {
    await app.revokeToken(req.principal!)
    return await reply.code(204).send(null)
  })

  app.get('/.well-known/jwks.json', {
    schema: { tags: ['auth'], response: { 200: Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown())) }) } }
  }, async () => ({ keys: app.signingKeys.jwks }))
}

export default authRoutes
