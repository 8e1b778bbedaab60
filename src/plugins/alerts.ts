import { setTimeout as sleep } from 'node:timers/promises'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    alerts: Alerts
  }
}

export const ALERT_KINDS = ['ip_blocked', 'key_failures', 'key_revoked', 'internal_error', 'upstream_down', 'upstream_up'] as const
export type AlertKind = typeof ALERT_KINDS[number]

/** An alert as delivered on `/system` room `admin` and to ALERT_WEBHOOK_URL (SPEC §7). */
export interface Alert {
  kind: AlertKind
  ip?: string
  keyId?: string
  count?: number
  /** The route of an upstream_down / upstream_up alert (SPEC §10). */
  route?: string
  at: string
}

export interface Alerts {
  raise: (alert: Omit<Alert, 'at'>) => void
  /** The socket layer subscribes to forward alerts to `/system` room `admin`. */
  onAlert: (listener: (alert: Alert) => void) => void
}

const WEBHOOK_ATTEMPTS = 5
const WEBHOOK_TIMEOUT_MS = 3000
// At shutdown, deliveries still retrying get this long, so the whole close stays within SPEC §7's 10 s.
const CLOSE_GRACE_MS = 2000

export default fp(async (app) => {
  const listeners: Array<(alert: Alert) => void> = []
  const pending = new Set<Promise<void>>()
  const webhookUrl = app.config.alertWebhookUrl
  // Aborted when the grace period at shutdown ends: requests in flight and backoff waits stop at once.
  const shutdown = new AbortController()

  /** Retries with exponential backoff off the request path; an alert is never dropped without an error line. */
  async function deliver (alert: Alert): Promise<void> {
    for (let attempt = 1; attempt <= WEBHOOK_ATTEMPTS && !shutdown.signal.aborted; attempt++) {
      try {
        const res = await fetch(webhookUrl as string, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(alert),
          signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(WEBHOOK_TIMEOUT_MS)])
        })
        // The body is not needed; reading it frees the connection for the next delivery.
        await res.arrayBuffer().catch(() => {})
        if (res.ok) return
      } catch {}
      if (attempt < WEBHOOK_ATTEMPTS) await sleep(200 * 2 ** attempt, undefined, { ref: false, signal: shutdown.signal }).catch(() => {})
    }
    if (shutdown.signal.aborted) app.log.error({ alert }, 'alert webhook not delivered before shutdown')
    else app.log.error({ alert }, 'alert webhook failed after every retry')
  }

  app.decorate('alerts', {
    raise (partial) {
      const alert: Alert = { ...partial, at: new Date().toISOString() }
      app.log.warn({ alert }, `alert: ${alert.kind}`)
      app.gatewayMetrics.alerts.inc({ kind: alert.kind })
      for (const listener of listeners) listener(alert)
      if (webhookUrl !== undefined) {
        const delivery = deliver(alert).finally(() => pending.delete(delivery))
        pending.add(delivery)
      }
    },
    onAlert (listener) {
      listeners.push(listener)
    }
  })
  app.addHook('onClose', async () => {
    if (pending.size > 0) {
      const grace = new AbortController()
      await Promise.race([Promise.allSettled(pending), sleep(CLOSE_GRACE_MS, undefined, { signal: grace.signal }).catch(() => {})])
      grace.abort()
    }
    shutdown.abort()
    await Promise.allSettled(pending)
  })
}, { name: 'alerts', fastify: '5.x', dependencies: ['config', 'metrics'] })
