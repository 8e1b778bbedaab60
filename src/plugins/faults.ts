import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Reports an error the gateway threw while serving one client (relaying,
     * acking, emitting): counted in `gateway_internal_errors_total`, logged,
     * and alerted as `internal_error` at most once a minute. The caller
     * answers the client; the process never sees the error.
     */
    reportFault: (err: unknown, context: FaultContext) => void
  }
}

export interface FaultContext {
  where: string
  keyId?: string
  namespace?: string
  /** Logged once per owner (a socket): a client repeating a failing packet must not flood the log. */
  owner?: object
}

const ALERT_EVERY_MS = 60_000

export default fp(async (app) => {
  const logged = new WeakSet<object>()
  let alertedAt = -Infinity
  app.decorate('reportFault', (err: unknown, { where, keyId, namespace, owner }: FaultContext) => {
    app.gatewayMetrics.internalErrors.inc({ where })
    if (owner === undefined || !logged.has(owner)) {
      if (owner !== undefined) logged.add(owner)
      app.log.error({ err, where, keyId, namespace }, 'internal error while serving a client (the client was answered UNAVAILABLE)')
    }
    const now = Date.now()
    if (now - alertedAt >= ALERT_EVERY_MS) {
      alertedAt = now
      app.alerts.raise({ kind: 'internal_error', keyId })
    }
  })
}, { name: 'faults', fastify: '5.x', dependencies: ['metrics', 'alerts'] })
