import type { FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { assertNamespaceAllowed, type Principal } from '../auth/principal.js'
import { gatewayError, isGatewayError, orUnavailable } from '../errors.js'
import { clientBucket } from '../net/ip.js'
import { bearerToken, notCredentialFailure, type AttemptContext, type Credential } from '../plugins/gatekeeper.js'
import { connectRefusal } from './refusal.js'
import { jsonShapeProblem } from '../protocol/json-shape.js'
import type { GatewaySocket } from './types.js'
import { askRoute } from './route-hooks.js'

/** The handshake's credential: `auth.token`, or an `Authorization: Bearer` header (server clients). */
function handshakeCredential (auth: unknown, socket: GatewaySocket): Credential {
  const token = (auth as { token?: unknown } | undefined)?.token
  if (typeof token === 'string') return { kind: 'token', value: token }
  const bearer = bearerToken(socket.handshake.headers.authorization)
  if (bearer !== undefined) return { kind: 'token', value: bearer }
  return undefined
}

/**
 * Same-origin means the Origin names the host the handshake was sent to;
 * otherwise it must be one of CORS_ORIGINS. No Origin (servers, mobile apps)
 * is not refused for it: cross-site hijacking needs a browser, which sends one.
 */
export function createOriginCheck (allowed: readonly string[]): (req: IncomingMessage) => boolean {
  const allowedSet = new Set(allowed)
  return (req) => {
    const origin = req.headers.origin
    if (origin === undefined) return true
    if (allowedSet.has(origin)) return true
    const host = req.headers.host
    return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`)
  }
}

/**
 * Connection middleware for every namespace: origin, connection rate, then
 * one audited attempt (token, revocation, key state, IP allowlist, namespace
 * down-scope, policy `connect`, maxConnections) through the same decorators
 * the REST routes use, then the route taking `$connect`, if any. A refusal
 * reaches the client as `connect_error`.
 */
export function createConnectionGate (app: FastifyInstance, clientIp: (req: IncomingMessage) => string) {
  const originAllowed = createOriginCheck(app.config.corsOrigins)
  const connectRate = app.config.rateLimit.connect
  const maxDepth = app.config.maxJsonDepth

  return async (socket: GatewaySocket, next: (err?: Error) => void): Promise<void> => {
    const namespace = socket.nsp.name
    const ip = clientIp(socket.request)
    const attempt = { ip, transport: 'socket' as const, namespace, userAgent: socket.handshake.headers['user-agent'] ?? null }
    // Nothing the client put in `auth` stays on the socket: only the gate reads it. Kept, it would cost
    // every idle socket its size, and be serialised for other instances (fetchSockets answers).
    const auth = socket.handshake.auth
    socket.handshake.auth = {}
    let slotKeyId: string | undefined
    try {
      await refuseBeforeCredential(app, attempt, async () => {
        if (!originAllowed(socket.request)) throw gatewayError('ORIGIN_NOT_ALLOWED')
        await app.hitRateLimit(`connect:${clientBucket(ip)}`, connectRate, 'connect')
        if (jsonShapeProblem(auth, maxDepth) !== undefined) throw gatewayError('VALIDATION_FAILED', `auth must be JSON nested at most ${maxDepth} levels deep`)
      })
      const principal = await app.admit(handshakeCredential(auth, socket), {
        ...attempt,
        authorize: async (p: Principal) => {
          assertNamespaceAllowed(p, namespace)
          const refused = app.authorize(p, 'connect', namespace)
          if (refused !== undefined) throw refused
          if (await reserveConnection(app, p)) slotKeyId = p.keyId
          // The backend's word last, once the gateway's own checks passed (a route taking `$connect`, SPEC §10):
          // its refusal is audited like the gateway's.
          const decision = askRoute(app, socket, p, '$connect', null)
          const refusedByRoute = decision === undefined ? undefined : await decision
          if (refusedByRoute !== undefined) throw notCredentialFailure(refusedByRoute)
        }
      })
      socket.data = {
        principal,
        ip,
        windowStart: 0,
        windowCount: 0,
        windowRefused: 0,
        rateNoticeAt: -1
      }
      if (slotKeyId !== undefined) holdConnectionSlot(app, socket, slotKeyId)
      delete socket.handshake.headers.authorization
      next()
    } catch (err) {
      if (slotKeyId !== undefined) releaseConnection(app, slotKeyId)
      if (!isGatewayError(err)) app.log.error({ err }, 'socket connection gate failed')
      next(connectRefusal(isGatewayError(err) ? err : gatewayError('UNAVAILABLE')))
    }
  }
}

/**
 * Checks that refuse a handshake before its credential is read (origin,
 * connection rate): `admit` audits the rest, so these are audited here, one
 * row per attempt either way.
 */
async function refuseBeforeCredential (app: FastifyInstance, attempt: Omit<AttemptContext, 'authorize'>, checks: () => Promise<void>): Promise<void> {
  try {
    await checks()
  } catch (err) {
    const refusal = isGatewayError(err) ? err : gatewayError('UNAVAILABLE')
    app.audit.record({ ...attempt, keyId: null, outcome: 'refused', reason: refusal.code })
    throw refusal
  }
}

export const connectionCountKey = (keyId: string): string => `conns:${keyId}`

/** Counts the connection against the key's maxConnections across the cluster; refuses past it. */
async function reserveConnection (app: FastifyInstance, { keyId, maxConnections }: Principal): Promise<boolean> {
  if (maxConnections === null) return false
  const acquired = await orUnavailable(app.store.acquireSlot(connectionCountKey(keyId), maxConnections))
  if (!acquired) throw gatewayError('RATE_LIMITED', `The key already has ${maxConnections} live connections`)
  return true
}

function releaseConnection (app: FastifyInstance, keyId: string): void {
  void app.store.releaseSlot(connectionCountKey(keyId)).catch(() => {})
}

/**
 * Gives the slot back exactly once: when the socket disconnects, or when the
 * client went away before the socket connected (socket.io then drops it
 * without a `disconnect` event).
 */
function holdConnectionSlot (app: FastifyInstance, socket: GatewaySocket, keyId: string): void {
  let held = true
  const release = (): void => {
    if (!held) return
    held = false
    socket.conn.off('close', release)
    releaseConnection(app, keyId)
  }
  // The client may have gone while the gate awaited: then 'close' has fired already and will not again.
  if (socket.conn.readyState !== 'open') return release()
  socket.conn.once('close', release)
  socket.once('disconnect', release)
}
