import fp from 'fastify-plugin'
import type { JSONValue } from 'postgres'
import { Gauge, type Counter } from 'prom-client'

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
  /**
   * Logs the attempt now and queues its row; never waits on PostgreSQL. A
   * refusal made before any credential was read (no key id; RATE_LIMITED or
   * TEMPORARILY_BLOCKED) joins its summary row instead: one row and one log
   * line per (ip, transport, namespace, reason) and window, with `count`.
   */
  record: (attempt: AuthAttempt) => void
  /** Closes the open summaries and writes every queued row. */
  flush: () => Promise<void>
  /** Rows waiting: queued ones and open summaries. */
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
// Refusals that come before any credential is read: a flood of them is what a blocked client sends.
const SUMMARISED_REASONS: ReadonlySet<string> = new Set(['RATE_LIMITED', 'TEMPORARILY_BLOCKED'])
// One summary row per second and (ip, transport, namespace, reason): every attempt still reaches
// PostgreSQL within about a second (window + one flush tick), as SPEC §7 promises of every write,
// while a flood from one address costs 3,600 rows an hour instead of one per attempt.
const SUMMARY_WINDOW_MS = 1000
// Open summaries kept in memory at most; past it (a flood from many addresses) attempts fold into
// one row per (transport, namespace, reason) under FOLDED_IP, so memory and rows per window stay bounded.
const MAX_SUMMARIES = 1000
const FOLDED_IP = '*'

interface QueuedRow { at: Date, key_id: string | null, ip: string, transport: string, namespace: string | null, outcome: string, reason: string | null, user_agent: string | null, count: number }
interface Summary { row: QueuedRow, closesAt: number }

const summaryId = (ip: string, { transport, namespace, reason }: AuthAttempt): string => `${ip}\n${transport}\n${namespace ?? ''}\n${reason ?? ''}`
const isSummarised = (attempt: AuthAttempt): boolean => attempt.keyId === null && attempt.reason !== null && SUMMARISED_REASONS.has(attempt.reason)

export default fp(async (app) => {
  const queue: QueuedRow[] = []
  // Insertion order is closing order (each opens with closesAt = now + window), so closing stops at the first open one.
  const summaries = new Map<string, Summary>()
  let flushing: Promise<void> | undefined
  // Set once the final flush is done: PostgreSQL is closing, so a later row (an attempt still in flight) goes to the log.
  let closed = false
  let recorded = 0
  const { gatewayMetrics: metrics } = app
  // The attempt line holds no credential by construction (ip, transport, namespace, user agent, key id,
  // outcome, reason), so it skips the redaction pass every other line gets: its wildcard paths were
  // a sizeable share of logging each attempt.
  const auditLog = app.log.child({}, { redact: [] })
  const depth = (): number => queue.length + summaries.size
  // The queue's own gauge, read at each scrape rather than set on every row.
  metrics.registry.registerMetric(new Gauge({ name: 'gateway_audit_queue_depth', help: 'Audit rows waiting to be written', registers: [], collect () { this.set(depth()) } }))
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
        insert into auth_attempts (at, key_id, ip, transport, namespace, outcome, reason, user_agent, count)
        select at, key_id, ip, transport, namespace, outcome, reason, user_agent, count
        from jsonb_to_recordset(${app.sql.json(batch as unknown as JSONValue)})
          as r(at timestamptz, key_id text, ip text, transport text, namespace text, outcome text, reason text, user_agent text, count integer)`
      queue.splice(0, batch.length)
    }
  }

  /** Writes the queue; one writer at a time, a caller arriving mid-write waits for it and then writes what came since. */
  async function writeQueue (): Promise<void> {
    while (flushing !== undefined) await flushing
    if (queue.length === 0) return
    flushing = writeQueued().finally(() => { flushing = undefined })
    await flushing
  }

  function enqueue (row: QueuedRow): void {
    if (closed || queue.length >= MAX_QUEUED) {
      app.log.warn({ auditRow: row }, closed ? 'audit row after shutdown: written to the log instead of PostgreSQL' : 'audit queue full: row written to the log instead of PostgreSQL')
      metrics.auditSpilled.inc()
      return
    }
    queue.push(row)
    if (queue.length >= BATCH_SIZE) void writeQueue().catch(() => {})
  }

  /** A summary's one log line and one row, when its window closes. */
  function closeSummary (id: string, { row }: Summary): void {
    summaries.delete(id)
    const audit = { keyId: row.key_id, ip: row.ip, transport: row.transport, namespace: row.namespace, outcome: row.outcome, reason: row.reason, userAgent: row.user_agent, count: row.count }
    if (row.ip === FOLDED_IP) auditLog.warn({ audit }, `auth ${row.outcome}: attempts from more than ${MAX_SUMMARIES} addresses in one window, folded into ip ${FOLDED_IP}`)
    else if (LOGS_INFO.has(app.log.level)) auditLog.info({ audit }, `auth ${row.outcome}`)
    enqueue(row)
  }

  /** Closes the summaries whose window has ended by `now` (all of them by default). */
  function closeSummaries (now = Infinity): void {
    for (const [id, summary] of summaries) {
      if (summary.closesAt > now) break
      closeSummary(id, summary)
    }
  }

  /** The summary `id` still open at `now`; one whose window has ended is closed first. */
  function openSummary (id: string, now: number): Summary | undefined {
    const summary = summaries.get(id)
    if (summary === undefined || summary.closesAt > now) return summary
    closeSummary(id, summary)
    return undefined
  }

  function summarise (attempt: AuthAttempt, userAgent: string | null): void {
    const now = Date.now()
    let id = summaryId(attempt.ip, attempt)
    let summary = openSummary(id, now)
    if (summary === undefined && summaries.size >= MAX_SUMMARIES) {
      closeSummaries(now)
      if (summaries.size >= MAX_SUMMARIES) {
        id = summaryId(FOLDED_IP, attempt)
        summary = openSummary(id, now)
      }
    }
    if (summary === undefined) {
      const folded = id.startsWith(`${FOLDED_IP}\n`)
      // The first attempt's time and user agent stand for the window (a folded row has many clients: none).
      summary = {
        row: { at: new Date(now), key_id: null, ip: folded ? FOLDED_IP : attempt.ip, transport: attempt.transport, namespace: attempt.namespace, outcome: attempt.outcome, reason: attempt.reason, user_agent: folded ? null : userAgent, count: 0 },
        closesAt: now + SUMMARY_WINDOW_MS
      }
      summaries.set(id, summary)
    }
    summary.row.count++
  }

  async function flush (): Promise<void> {
    closeSummaries()
    await writeQueue()
  }

  app.decorate('audit', {
    record (attempt) {
      const userAgent = attempt.userAgent === null ? null : attempt.userAgent.slice(0, USER_AGENT_MAX)
      attemptCounter(attempt.transport, attempt.outcome, attempt.reason ?? 'ok').inc()
      recorded++
      // Past shutdown nothing would close a summary: such an attempt is an ordinary row (spilled to the log).
      if (!closed && isSummarised(attempt)) {
        summarise(attempt, userAgent)
        return
      }
      if (LOGS_INFO.has(app.log.level)) auditLog.info({ audit: { ...attempt, userAgent, count: 1 } }, `auth ${attempt.outcome}`)
      enqueue({ at: new Date(), key_id: attempt.keyId, ip: attempt.ip, transport: attempt.transport, namespace: attempt.namespace, outcome: attempt.outcome, reason: attempt.reason, user_agent: userAgent, count: 1 })
    },
    flush,
    get depth () { return depth() }
  } satisfies AuditLog)

  const timer = setInterval(() => {
    closeSummaries(Date.now())
    writeQueue().catch((err: unknown) => { app.log.warn({ err, queued: queue.length }, 'audit flush failed; rows kept for the next try') })
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
      } while ((recorded !== seen || depth() > 0) && Date.now() < deadline)
      // Summaries are closed into the queue before `closed`, which would send them to the log instead.
      closeSummaries()
      closed = true
      // A row queued between the last write and `closed` (attempts still in flight) is written too.
      await writeQueue()
    } catch (err) {
      closeSummaries()
      closed = true
      // PostgreSQL is gone for good at shutdown: the log keeps every row rather than losing it.
      for (const row of queue.splice(0)) app.log.warn({ auditRow: row }, 'audit row not written to PostgreSQL at shutdown')
      app.log.error({ err }, 'final audit flush failed')
    }
  })
}, { name: 'audit', fastify: '5.x', dependencies: ['db', 'metrics'] })
