import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type { Principal } from '../auth/principal.js'
import type { Scope } from '../keys/types.js'
import { gatewayError, isGatewayError } from '../errors.js'
import type { AuthError } from './auth.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * One authentication attempt, as every transport makes it: anomaly block,
     * credential check (key or token), one audit row and log line, and the
     * failure counted toward the anomaly guard. Throws the §6 refusal.
     */
    admit: (credential: Credential, attempt: AttemptContext) => Promise<Principal>
    /** onRequest hook: a key or token with scope `admin`. */
    requireAdmin: (req: FastifyRequest) => Promise<void>
    /** onRequest hook: any valid key or token. */
    requireCredential: (req: FastifyRequest) => Promise<void>
    /** onRequest hook: a key or token with scope `publish` (POST /v1/publish). */
    requirePublisher: (req: FastifyRequest) => Promise<void>
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

export type Credential = { kind: 'key' | 'token', value: string } | undefined

export interface AttemptContext {
  ip: string
  transport: 'http' | 'socket'
  namespace: string | null
  userAgent: string | null
  /** Further checks that belong to the same attempt (e.g. policy `connect`): a refusal here is audited as refused. */
  authorize?: (principal: Principal) => void | Promise<void>
}

// Refusals that say nothing about the credential: they do not count toward an anomaly block.
const NOT_CREDENTIAL_FAILURES = new Set(['RATE_LIMITED', 'TEMPORARILY_BLOCKED', 'UNAVAILABLE', 'ORIGIN_NOT_ALLOWED', 'FORBIDDEN'])
const notCredentialFailures = new WeakSet<Error>()

/**
 * Marks a refusal an `authorize` step throws as no failure of the credential
 * (a backend refusing a `$connect`, SPEC §10): audited, but not counted toward
 * the anomaly block, whatever its code.
 */
export function notCredentialFailure<E extends Error> (err: E): E {
  notCredentialFailures.add(err)
  return err
}

/** The token of an `Authorization: Bearer …` header, for HTTP requests and Socket.IO handshakes alike. */
export function bearerToken (authorization: string | undefined): string | undefined {
  if (typeof authorization !== 'string' || authorization.slice(0, 7).toLowerCase() !== 'bearer ') return undefined
  return authorization.slice(7).trim()
}

/** The credential of an HTTP request: `X-API-Key`, or `Authorization: Bearer`. */
export function requestCredential (req: FastifyRequest): Credential {
  const apiKey = req.headers['x-api-key']
  if (typeof apiKey === 'string') return { kind: 'key', value: apiKey }
  const authorization = req.headers.authorization
  const token = bearerToken(authorization)
  if (token !== undefined) return { kind: 'token', value: token }
  return undefined
}

export function httpAttempt (req: FastifyRequest): AttemptContext {
  return { ip: req.ip, transport: 'http', namespace: null, userAgent: req.headers['user-agent'] ?? null }
}

function auditFields ({ ip, transport, namespace, userAgent }: AttemptContext): Pick<AttemptContext, 'ip' | 'transport' | 'namespace' | 'userAgent'> {
  return { ip, transport, namespace, userAgent }
}

/** A scope check that is part of the attempt, so a key without the scope leaves a refused row, not an allowed one. */
const requireScope = (scope: Scope) => (principal: Principal): void => {
  if (!principal.scopes.includes(scope)) throw gatewayError('FORBIDDEN', `This endpoint requires scope ${scope}`)
}

export default fp(async (app) => {
  app.decorateRequest('principal', null)

  async function admit (credential: Credential, attempt: AttemptContext): Promise<Principal> {
    let keyId: string | undefined
    try {
      await app.anomaly.assertNotBlocked(attempt.ip)
      if (credential === undefined || credential.value.length === 0) throw gatewayError('UNAUTHORIZED')
      const principal = credential.kind === 'key'
        ? await app.authenticateKey(credential.value, attempt.ip)
        : await app.authenticateToken(credential.value, attempt.ip)
      keyId = principal.via === 'root' ? undefined : principal.keyId
      await attempt.authorize?.(principal)
      app.audit.record({ ...auditFields(attempt), keyId: keyId ?? null, outcome: 'allowed', reason: null })
      return principal
    } catch (err) {
      const refusal = isGatewayError(err) ? err : gatewayError('UNAVAILABLE')
      if (!isGatewayError(err)) app.log.error({ err }, 'authentication failed unexpectedly')
      keyId ??= (refusal as AuthError).keyId
      app.audit.record({ ...auditFields(attempt), keyId: keyId ?? null, outcome: 'refused', reason: refusal.code })
      if (!NOT_CREDENTIAL_FAILURES.has(refusal.code) && !notCredentialFailures.has(refusal)) {
        await app.anomaly.recordFailure(attempt.ip, keyId).catch((e: unknown) => { app.log.warn({ err: e }, 'anomaly counter unavailable') })
      }
      throw refusal
    }
  }

  app.decorate('admit', admit)
  app.decorate('requireCredential', async (req: FastifyRequest) => {
    req.principal = await admit(requestCredential(req), httpAttempt(req))
  })
  app.decorate('requireAdmin', async (req: FastifyRequest) => {
    req.principal = await admit(requestCredential(req), { ...httpAttempt(req), authorize: requireScope('admin') })
  })
  // The root admin stands above tenants and policies (SPEC §14): it publishes into the tenant it names.
  const publisherScope = requireScope('publish')
  const requirePublishRight = (principal: Principal): void => { if (principal.via !== 'root') publisherScope(principal) }
  app.decorate('requirePublisher', async (req: FastifyRequest) => {
    req.principal = await admit(requestCredential(req), { ...httpAttempt(req), authorize: requirePublishRight })
  })
}, { name: 'gatekeeper', fastify: '5.x', dependencies: ['auth', 'audit', 'anomaly'] })
