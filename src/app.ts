import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify'
import { destination, type DestinationStream } from 'pino'
import type { Config } from './config.js'
import { fastifyTrustProxy } from './net/client-ip.js'
import { errorBody, gatewayError, isBackingServiceError, isGatewayError, type GatewayError } from './errors.js'
import fastifyCors from '@fastify/cors'
import fastifyHelmet from '@fastify/helmet'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyPluginAsync } from 'fastify'
import configPlugin from './plugins/config.js'
import metricsPlugin from './plugins/metrics.js'
import dbPlugin from './plugins/db.js'
import storePlugin from './plugins/store.js'
import keysPlugin from './plugins/keys.js'
import policiesPlugin from './plugins/policies.js'
import ipAllowlistPlugin from './plugins/ip-allowlist.js'
import authPlugin from './plugins/auth.js'
import rateLimitPlugin from './plugins/rate-limit.js'
import alertsPlugin from './plugins/alerts.js'
import faultsPlugin from './plugins/faults.js'
import anomalyPlugin from './plugins/anomaly.js'
import auditPlugin from './plugins/audit.js'
import auditQueryPlugin from './plugins/audit-query.js'
import gatekeeperPlugin from './plugins/gatekeeper.js'
import authorizePlugin from './plugins/authorize.js'
import messagesPlugin from './plugins/messages.js'
import historyPlugin from './plugins/history.js'
import presencePlugin from './plugins/presence.js'
import routeStorePlugin from './plugins/route-store.js'
import routingPlugin from './plugins/routing.js'
import ioPlugin from './plugins/io.js'
import socketsPlugin from './sockets/index.js'
import publishRoutes from './routes/publish.js'
import healthRoutes from './routes/health.js'
import authRoutes from './routes/auth.js'
import keyRoutes from './routes/keys.js'
import policyRoutes from './routes/policies.js'
import routingRoutes from './routes/routing.js'
import auditRoutes from './routes/audit.js'
import presenceRoutes from './routes/presence.js'
import connectionRoutes from './routes/connections.js'
import webRoutes from './plugins/web.js'
import { ErrorResponse } from './routes/schemas.js'
import { jsonBodyParser } from './net/json-body.js'

export interface BuildOptions {
  /** Where log lines go (default stdout); tests read them to prove no secret is logged. */
  logStream?: DestinationStream
}

// Log lines are written in batches rather than one write(2) each (a line per authentication attempt
// made that syscall a visible share of a token's cost): at most LOG_FLUSH_MS late, flushed at close.
const LOG_FLUSH_MS = 200
const LOG_BUFFER_BYTES = 8 * 1024

// How long the close waits for a write already in flight (a stdout pipe that stopped reading must not hold the exit).
const LOG_DRAIN_MAX_MS = 1000

function bufferedStdout (): { stream: ReturnType<typeof destination>, close: () => Promise<void> } {
  const stream = destination({ dest: 1, sync: false, minLength: LOG_BUFFER_BYTES })
  const timer = setInterval(() => { stream.flush() }, LOG_FLUSH_MS)
  timer.unref()
  return {
    stream,
    close: async () => {
      clearInterval(timer)
      // flushSync skips a chunk whose asynchronous write is still in flight: wait for that write first,
      // so lines reach stdout whole and in order (some audit rows exist only as log lines).
      await new Promise<void>((resolve) => {
        const giveUp = setTimeout(resolve, LOG_DRAIN_MAX_MS)
        stream.flush(() => { clearTimeout(giveUp); resolve() })
      })
      try { stream.flushSync() } catch { /* stdout already gone: nothing left to tell */ }
    }
  }
}

// The docs UI's policy: helmet's default, which the UI's scripts and inline styles work under.
const DOCS_CSP = "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; form-action 'self'; frame-ancestors 'self'; " +
  "img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests"

/** Log paths that may carry a credential: pino replaces them before a line is written. */
export const REDACTED_PATHS = [
  'req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie',
  'apiKey', '*.apiKey', 'key', '*.key', 'secret', '*.secret', 'token', '*.token', 'accessToken', '*.accessToken'
]

/** Builds the whole gateway as one Fastify instance; call `ready()` or `listen()` on it. */
export function build (config: Config, options: BuildOptions = {}): FastifyInstance {
  const buffered = options.logStream === undefined ? bufferedStdout() : undefined
  const app = Fastify({
    logger: { level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, stream: options.logStream ?? buffered!.stream },
    // No access line per request at info and above: every authentication attempt already writes its own
    // line (SPEC §7), errors are logged by the error handler, and durations are in /metrics. Two more
    // lines per token request cost more than issuing the token's signature. At debug and trace they are back.
    logController: new LogController({ disableRequestLogging: !['debug', 'trace'].includes(config.logLevel) }),
    trustProxy: fastifyTrustProxy(config.trustProxy),
    bodyLimit: config.bodyLimit,
    ...(config.tls !== undefined ? { https: { cert: config.tls.cert, key: config.tls.key } } : {}) as { https?: null },
    // SPEC §4: strict validation, no coercion, unknown properties refused rather than stripped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
    // While closing, requests are refused by the hook below, with the §4 body.
    return503OnClosing: false,
    // A cold embedded PGlite can take well over Fastify's default 10 s on a loaded machine.
    pluginTimeout: 60_000,
    // A client that stalls its request is cut off rather than holding a connection forever.
    requestTimeout: 30_000,
    // Errors the router raises before any route or hook (an undecodable or over-long path segment):
    // SPEC §4 makes a malformed id in a path a 404, and every error keeps the §4 body.
    frameworkErrors: (err, _req, reply) => {
      const code = (err as { code?: string }).code
      const refusal = code === 'FST_ERR_BAD_URL' || code === 'FST_ERR_MAX_PARAM_LENGTH' ? gatewayError('NOT_FOUND') : toGatewayError(err as FastifyError)
      void (reply as FastifyReply).code(refusal.statusCode).send(errorBody(refusal))
    }
  })
  // onClose hooks run in reverse order of registration: this first one runs last, after every
  // other hook has logged what it had to say.
  if (buffered !== undefined) app.addHook('onClose', async () => { await buffered.close() })

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const refusal = toGatewayError(err)
    // A backing service being away is an expected, fail-closed outcome; anything else at 5xx is a bug.
    if (refusal.statusCode === 503) req.log.warn({ err: err.message }, 'backing service unavailable')
    else if (refusal.statusCode >= 500) req.log.error({ err }, 'request failed')
    if (refusal.retryAfter !== undefined) void reply.header('retry-after', String(refusal.retryAfter))
    void reply.code(refusal.statusCode).send(errorBody(refusal))
  })
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onRequest', async () => {
    if (closing) throw gatewayError('UNAVAILABLE', 'The gateway is shutting down')
  })
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(errorBody(gatewayError('NOT_FOUND', `Route ${req.method} ${req.url.split('?')[0]} not found`)))
  })

  // Every JSON body is bounded in depth before any handler or serialiser recurses over it (SPEC §2).
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(config.maxJsonDepth))

  app.addSchema(ErrorResponse)
  void app.register(configPlugin, { config })
  // The API answers JSON only: its policy forbids every resource and framing (OWASP's advice for APIs),
  // which is also a header a third the size of helmet's default. The docs UI sends its own (staticCSP).
  void app.register(fastifyHelmet, {
    global: true,
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    // Framed by nobody, as the policy says (X-Frame-Options for browsers without frame-ancestors).
    frameguard: { action: 'deny' }
  })
  // Retry-After on a 429/503 is for the SDK too, which a browser only lets it read when exposed.
  void app.register(fastifyCors, { origin: config.corsOrigins.length > 0 ? config.corsOrigins : false, credentials: true, exposedHeaders: ['Retry-After'] })
  void app.register(fastifySwagger, {
    openapi: {
      info: { title: 'Spark Gateway', version: '0.1.0', description: 'API keys, tokens, policies and publish in front of Socket.IO' },
      components: { securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' }, bearer: { type: 'http', scheme: 'bearer' } } }
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` }
  })
  void app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: DOCS_CSP })
  void app.register(metricsPlugin)
  void app.register(dbPlugin)
  void app.register(storePlugin)
  void app.register(keysPlugin)
  void app.register(policiesPlugin)
  void app.register(ipAllowlistPlugin)
  void app.register(authPlugin)
  void app.register(auditPlugin)
  void app.register(rateLimitPlugin)
  void app.register(alertsPlugin)
  void app.register(faultsPlugin)
  void app.register(anomalyPlugin)
  void app.register(auditQueryPlugin)
  void app.register(gatekeeperPlugin)
  void app.register(ioPlugin)
  void app.register(authorizePlugin)
  void app.register(historyPlugin)
  void app.register(presencePlugin)
  void app.register(messagesPlugin)
  void app.register(routeStorePlugin)
  void app.register(routingPlugin)

  void app.register(healthRoutes)
  void app.register(authRoutes)
  void app.register(adminRoutes)
  void app.register(publishRoutes)
  void app.register(webRoutes)
  // Last: the socket layer only adapts what the plugins before it decorate.
  void app.register(socketsPlugin)
  return app
}

/** Admin endpoints: one scope whose every route requires a key or token with scope `admin`. */
const adminRoutes: FastifyPluginAsync = async (app) => {
  app.addHook('onRequest', app.requireAdmin)
  await app.register(keyRoutes)
  await app.register(policyRoutes)
  await app.register(routingRoutes)
  await app.register(auditRoutes)
  await app.register(presenceRoutes)
  await app.register(connectionRoutes)
}

/** Maps any error a request can meet to a §6 refusal. */
function toGatewayError (err: FastifyError): GatewayError {
  if (isGatewayError(err)) return err
  if (err.validation !== undefined) return gatewayError('VALIDATION_FAILED', err.message)
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return gatewayError('PAYLOAD_TOO_LARGE')
  if (err.code === '23505') return gatewayError('CONFLICT', 'Already exists')
  // A row still referenced (or a reference to a row gone) after the route's own check: a race, told as a conflict.
  if (err.code === '23503') return gatewayError('CONFLICT')
  // PostgreSQL data exceptions (class 22: a time out of range, a bad number) only come from values the client sent.
  if (typeof err.code === 'string' && /^22[0-9A-Z]{3}$/.test(err.code)) return gatewayError('VALIDATION_FAILED')
  if (isBackingServiceError(err)) return gatewayError('UNAVAILABLE')
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    // Fastify's own 4xx (bad JSON, bad content type, empty body): the request is not valid.
    return gatewayError(err.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : err.statusCode === 404 ? 'NOT_FOUND' : 'VALIDATION_FAILED', err.message)
  }
  const internal = gatewayError('UNAVAILABLE', 'Internal error')
  internal.statusCode = 500
  return internal
}
