import fp from 'fastify-plugin'
import type { JSONValue } from 'postgres'
import type { Counter } from 'prom-client'

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
// Levels at which the per-attempt info line is written: above them its object is not even built.
const LOGS_INFO: ReadonlySet<string> = new Set(['trace', 'debug', 'info'])
// At shutdown, rows are written until none has come for DRAIN_QUIET_MS (attempts still in flight end), at most DRAIN_MAX_MS.
const DRAIN_QUIET_MS = 25
const DRAIN_MAX_MS = 2000

interface QueuedRow { at: Date, key_id: string | null, ip: string, transport: string, namespace: string | null, outcome: string, reason: string | null, user_agent: string | null }

export default fp(async (app) => {
  const queue: QueuedRow[] = []
  let flushing: Promise<void> | undefined
  // Set once the final flush is done: PostgreSQL is closing, so a later row (an attempt still in flight) goes to the log.
  let closed = false
  let recorded = 0
  const { gatewayMetrics: metrics } = app
  // The attempt line holds no credential by construction (ip, transport, namespace, user agent, key id,
  // outcome, reason), so it skips the redaction pass every other line gets: its wildcard paths were
  // a sizeable share of logging each attempt.
  const auditLog = app.log.child({}, { redact: [] })
  metrics.readAuditQueueDepth = () => queue.length
  // prom-client hashes a label object on every inc(); the few (transport, outcome, reason) children are resolved once.
  const attemptCounters = new Map<string, Counter.Internal>()
  const attemptCounter = (transport: string, outcome: string, reason: string): Counter.Internal => {
    const id = `${transport} ${outcome} ${reason}`
    let counter = attemptCounters.get(id)
    if (counter === undefined) {
      counter = metrics.authAttempts.labels({ transport, outcome, reason })
      attemptCounters.set(id, counter)
    }
    return counter
  }

  async function writeQueued (): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, BATCH_SIZE)
      // One JSON parameter for the batch, not eight per row: serialising thousands of bound parameters
      // cost the gateway's core more per attempt than the rest of the audit path.
      await app.sql`
        insert into auth_attempts (at, key_id, ip, transport, namespace, outcome, reason, user_agent)
        select at, key_id, ip, transport, namespace, outcome, reason, user_agent
        from jsonb_to_recordset(${app.sql.json(batch as unknown as JSONValue)})
          as r(at timestamptz, key_id text, ip text, transport text, namespace text, outcome text, reason text, user_agent text)`
      queue.splice(0, batch.length)
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
      if (LOGS_INFO.has(app.log.level)) auditLog.info({ audit: { ...attempt, userAgent } }, `auth ${attempt.outcome}`)
      attemptCounter(attempt.transport, attempt.outcome, attempt.reason ?? 'ok').inc()
      const row: QueuedRow = { at: new Date(), key_id: attempt.keyId, ip: attempt.ip, transport: attempt.transport, namespace: attempt.namespace, outcome: attempt.outcome, reason: attempt.reason, user_agent: userAgent }
      if (closed || queue.length >= MAX_QUEUED) {
        app.log.warn({ auditRow: row }, closed ? 'audit row after shutdown: written to the log instead of PostgreSQL' : 'audit queue full: row written to the log instead of PostgreSQL')
        metrics.auditSpilled.inc()
        return
      }
      queue.push(row)
      recorded++
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
      const deadline = Date.now() + DRAIN_MAX_MS
      let seen: number
      do {
        seen = recorded
        await flush()
        await new Promise((resolve) => setTimeout(resolve, DRAIN_QUIET_MS))
      } while ((recorded !== seen || queue.length > 0) && Date.now() < deadline)
      closed = true
      // A row queued between the last write and `closed` (attempts still in flight) is written too.
      await flush()
    } catch (err) {
      closed = true
      // PostgreSQL is gone for good at shutdown: the log keeps every row rather than losing it.
      for (const row of queue.splice(0)) app.log.warn({ auditRow: row }, 'audit row not written to PostgreSQL at shutdown')
      app.log.error({ err }, 'final audit flush failed')
    }
  })
}, { name: 'audit', dependencies: ['db', 'metrics'] })
