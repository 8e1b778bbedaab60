import fp from 'fastify-plugin'
import fastifyMetrics from 'fastify-metrics'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { gatewayError } from '../errors.js'
import { compileCidrs } from '../net/ip.js'
import { ALERT_KINDS } from './alerts.js'
import { NAMESPACES } from '../protocol/namespaces.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's own series (SPEC §7); incremented where the decision is made. */
    gatewayMetrics: GatewayMetrics
  }
}

export interface GatewayMetrics {
  registry: Registry
  authAttempts: Counter<'transport' | 'outcome' | 'reason'>
  socketConnections: Gauge<'namespace'>
  socketPackets: Counter<'namespace' | 'outcome'>
  rateLimited: Counter<'scope'>
  alerts: Counter<'kind'>
  /** Errors the gateway threw while serving a client, caught before they could stop the process: each one is a bug. */
  internalErrors: Counter<'where'>
  auditSpilled: Counter
  /** Calls to the user's backends (SPEC §10), by route and outcome; notify events given up on count as dropped or expired. */
  upstreamRequests: Counter<'route' | 'outcome'>
  upstreamDuration: Histogram<'route'>
  upstreamBreakerOpen: Gauge<'route'>
}

/** Where a caught internal error can happen (`gateway_internal_errors_total{where}`). */
export const FAULT_SITES = ['packet', 'join', 'leave', 'disconnect', 'auth:refresh', 'history', 'presence', 'publish', 'adapter'] as const

/** Scopes of `gateway_rate_limited_total`: REST routes, Engine.IO handshakes, Socket.IO handshakes, packets of one socket, publishes of one key. */
export const RATE_LIMIT_SCOPES = ['http', 'transport', 'connect', 'socket', 'key'] as const

/**
 * Every series whose labels are known in advance starts at 0: a series that
 * only appears on its first event makes `rate()`/`increase()` miss that event
 * and leaves a dashboard or an alert rule with no data instead of a zero.
 */
function initialiseKnownSeries (metrics: GatewayMetrics): void {
  for (const namespace of NAMESPACES) {
    metrics.socketConnections.set({ namespace }, 0)
    for (const outcome of ['relayed', 'refused']) metrics.socketPackets.inc({ namespace, outcome }, 0)
  }
  for (const scope of RATE_LIMIT_SCOPES) metrics.rateLimited.inc({ scope }, 0)
  for (const kind of ALERT_KINDS) metrics.alerts.inc({ kind }, 0)
  for (const where of FAULT_SITES) metrics.internalErrors.inc({ where }, 0)
}

function createGatewayMetrics (): GatewayMetrics {
  // One registry per app instance, so several gateways in one process (tests, benchmarks) never share series.
  const registry = new Registry()
  const registers = [registry]
  const metrics: GatewayMetrics = {
    registry,
    authAttempts: new Counter({ name: 'gateway_auth_attempts_total', help: 'Authentication attempts', labelNames: ['transport', 'outcome', 'reason'], registers }),
    socketConnections: new Gauge({ name: 'gateway_socket_connections', help: 'Live Socket.IO connections', labelNames: ['namespace'], registers }),
    socketPackets: new Counter({ name: 'gateway_socket_packets_total', help: 'Socket.IO packets by outcome', labelNames: ['namespace', 'outcome'], registers }),
    rateLimited: new Counter({ name: 'gateway_rate_limited_total', help: 'Requests, handshakes and packets refused by a rate limit', labelNames: ['scope'], registers }),
    alerts: new Counter({ name: 'gateway_alerts_total', help: 'Alerts raised', labelNames: ['kind'], registers }),
    internalErrors: new Counter({ name: 'gateway_internal_errors_total', help: 'Errors thrown while serving a client, caught and answered UNAVAILABLE', labelNames: ['where'], registers }),
    auditSpilled: new Counter({ name: 'gateway_audit_spilled_total', help: 'Audit rows written to the log because the queue was full', registers }),
    upstreamRequests: new Counter({ name: 'gateway_upstream_requests_total', help: 'Events routed to backend services, by outcome', labelNames: ['route', 'outcome'], registers }),
    upstreamDuration: new Histogram({
      name: 'gateway_upstream_duration_seconds',
      help: 'Duration of calls to backend services',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers
    }),
    upstreamBreakerOpen: new Gauge({ name: 'gateway_upstream_breaker_open', help: '1 while the circuit breaker of a route\'s upstream is open', labelNames: ['route'], registers })
  }
  initialiseKnownSeries(metrics)
  return metrics
}

export default fp(async (app) => {
  const metrics = createGatewayMetrics()
  app.decorate('gatewayMetrics', metrics)
  // A CommonJS module whose plugin is its `default` export.
  await app.register(fastifyMetrics.default, {
    name: 'httpMetrics',
    endpoint: null,
    defaultMetrics: { enabled: true, register: metrics.registry },
    routeMetrics: {
      registeredRoutesOnly: true,
      // The histogram only: quantiles come from its buckets (histogram_quantile), and the summary's
      // sliding-window trees cost every request more than the rest of the metrics together.
      // (fastify-metrics still creates the summary: it is registered nowhere, so /metrics has no empty family.)
      enabled: { histogram: true, summary: false },
      overrides: { histogram: { registers: [metrics.registry] }, summary: { registers: [] } }
    }
  })

  const allowed = compileCidrs(['127.0.0.0/8', '::1', ...app.config.metricsAllow])
  app.get('/metrics', { schema: { hide: true } as never, config: { disableMetrics: true } as never }, async (req, reply) => {
    if (!allowed(req.ip)) throw gatewayError('FORBIDDEN', '/metrics is not served to this address')
    return await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
}, { name: 'metrics', fastify: '5.x', dependencies: ['config'] })
