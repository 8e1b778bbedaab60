import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditLog
  }
}

/** One authentication attempt (SPEC §4 audit row, §7). */
export interface AuthAttempt {
  keyId: string | null
  ip: string
  transport: 'http' | 'socket'
  namespace: string | null
  outcome: 'allowed' | 'refused'
  reason: string | null
  userAgent: string | null
}

export interface AuditLog {
  /** Logs the attempt now and queues its row; never waits on PostgreSQL. */
  record: (attempt: AuthAttempt) => void
  /** Writes every queued row. */
  flush: () => Promise<void>
  readonly depth: number
}

const FLUSH_INTERVAL_MS = 250
const BATCH_SIZE = 500
// While PostgreSQL is away rows wait in memory up to this many; beyond it they go to the log whole, never silently dropped.
const MAX_QUEUED = 50_000
const USER_AGENT_MAX = 256

interface QueuedRow { at: Date, key_id: string | null, ip: string, transport: string, namespace: string | null, outcome: string, reason: string | null, user_agent: string | null }

export default fp(async (app) => {
  const queue: QueuedRow[] = []
  let flushing: Promise<void> | undefined
  const { gatewayMetrics: metrics } = app

  async function writeQueued (): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, BATCH_SIZE)
      await app.sql`insert into auth_attempts ${app.sql(batch, 'at', 'key_id', 'ip', 'transport', 'namespace', 'outcome', 'reason', 'user_agent')}`
      queue.splice(0, batch.length)
      metrics.auditQueueDepth.set(queue.length)
    }
  }

  async function flush (): Promise<void> {
    // One writer at a time; a caller arriving mid-write waits for it and then writes what came since.
    while (flushing !== undefined) await flushing
    if (queue.length === 0) return
    flushing = writeQueued().finally(() => { flushing = undefined })
    await flushing
  }

  app.decorate('audit', {
    record (attempt) {
      const userAgent = attempt.userAgent === null ? null : attempt.userAgent.slice(0, USER_AGENT_MAX)
      app.log.info({ audit: { ...attempt, userAgent } }, `auth ${attempt.outcome}`)
      metrics.authAttempts.inc({ transport: attempt.transport, outcome: attempt.outcome, reason: attempt.reason ?? 'ok' })
      const row: QueuedRow = { at: new Date(), key_id: attempt.keyId, ip: attempt.ip, transport: attempt.transport, namespace: attempt.namespace, outcome: attempt.outcome, reason: attempt.reason, user_agent: userAgent }
      if (queue.length >= MAX_QUEUED) {
        app.log.warn({ auditRow: row }, 'audit queue full: row written to the log instead of PostgreSQL')
        metrics.auditSpilled.inc()
        return
      }
      queue.push(row)
      metrics.auditQueueDepth.set(queue.length)
      if (queue.length >= BATCH_SIZE) void flush().catch(() => {})
    },
    flush,
    get depth () { return queue.length }
  } satisfies AuditLog)

  const timer = setInterval(() => {
    flush().catch((err: unknown) => { app.log.warn({ err, queued: queue.length }, 'audit flush failed; rows kept for the next try') })
  }, FLUSH_INTERVAL_MS)
  timer.unref()
  app.addHook('onClose', async () => {
    clearInterval(timer)
    try {
      // MUTATION await flush()
    } catch (err) {
      // PostgreSQL is gone for good at shutdown: the log keeps every row rather than losing it.
      for (const row of queue.splice(0)) app.log.warn({ auditRow: row }, 'audit row not written to PostgreSQL at shutdown')
      app.log.error({ err }, 'final audit flush failed')
    }
  })
}, { name: 'audit', dependencies: ['db', 'metrics'] })
