import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { adminHeaders, buildApp, buildFrom, createKey, isolatedEnv, listen, logCollector } from '../helper.js'
import { outcome, requestToken } from '../support/auth.js'
import { parseExposition, samplesOf } from '../support/ops.js'
import { refusedHandshake } from '../support/sockets.js'

type Tap = { teardown: (fn: () => unknown) => void }

// Three failures are allowed, the fourth blocks the IP; the token limit never gets in the way.
const env = { ANOMALY_MAX_FAILURES: '3/minute', ANOMALY_BLOCK_SECONDS: '600', RATE_LIMIT_TOKEN: '10000000/minute', RATE_LIMIT_CONNECT: '100000/minute', LOG_LEVEL: 'info' }
const FLOOD = 500
// The summary window of src/plugins/audit.ts: a flood lasting `ms` spans at most this many windows.
const WINDOW_MS = 1000
const windowsWithin = (ms: number): number => Math.floor(ms / WINDOW_MS) + 1

interface StoredRow { key_id: string | null, ip: string, transport: string, namespace: string | null, outcome: string, reason: string | null, user_agent: string | null, count: number }
interface AuditLine { audit?: { keyId: string | null, ip: string, transport: string, namespace: string | null, reason: string | null, count: number }, level: number, msg: string }

const auditLines = (lines: string[], ip: string): Array<Required<AuditLine>['audit']> =>
  lines.map((l) => JSON.parse(l) as AuditLine).flatMap((l) => l.audit?.ip === ip ? [l.audit] : [])
const sum = (counts: number[]): number => counts.reduce((a, b) => a + b, 0)

async function storedRows (sql: postgres.Sql, ip: string): Promise<StoredRow[]> {
  return await sql<StoredRow[]>`select key_id, ip, transport, namespace, outcome, reason, user_agent, count from auth_attempts where ip = ${ip} order by id`
}

/** A connection of the test's own, for reading the table once the app is closed. */
function ownConnection (t: Tap, databaseUrl: string): postgres.Sql {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await sql.end() })
  return sql
}

async function attemptsCounted (app: FastifyInstance, labels: Record<string, string>): Promise<number> {
  const families = parseExposition((await app.inject({ url: '/metrics' })).body)
  return sum(samplesOf(families, 'gateway_auth_attempts_total', labels).map((s) => s.value))
}

/** Fails `failures` times from `ip` with a wrong secret (one ordinary row each): past the third, the IP is blocked. */
async function getBlocked (t: Test, app: FastifyInstance, apiKey: string, ip: string): Promise<void> {
  for (let i = 0; i < 4; i++) t.equal(outcome(await requestToken(app, `${apiKey}x`, ip, {}, { 'user-agent': 'flooder' })), '401 UNAUTHORIZED', `failure ${i + 1}`)
}

t.test(`a blocked flood of ${FLOOD} attempts from one IP is a handful of summary rows that add up to it, one log line each, written at close`, async (t) => {
  const shared = await isolatedEnv(t, env)
  const logs = logCollector()
  const app = await buildFrom(t, shared, logs.stream)
  const { id, apiKey } = await createKey(app)
  const ip = '10.61.0.1'
  await getBlocked(t, app, apiKey, ip)
  const started = performance.now()
  const answers = await Promise.all(Array.from({ length: FLOOD }, async () => outcome(await requestToken(app, apiKey, ip, {}, { 'user-agent': 'flooder' }))))
  const floodMs = performance.now() - started
  t.same([...new Set(answers)], ['429 TEMPORARILY_BLOCKED'], 'every attempt of the flood is refused')
  t.equal(await attemptsCounted(app, { transport: 'http', outcome: 'refused', reason: 'TEMPORARILY_BLOCKED' }), FLOOD, '/metrics counts every attempt')

  await app.close()
  const rows = await storedRows(ownConnection(t, shared.DATABASE_URL), ip)
  const failures = rows.filter((r) => r.reason === 'UNAUTHORIZED')
  t.same(failures.map((r) => [r.key_id, r.count]), Array(4).fill([id, 1]), 'the failures before the block are one row each, count 1')
  const blocked = rows.filter((r) => r.reason === 'TEMPORARILY_BLOCKED')
  t.equal(blocked.length + failures.length, rows.length, 'nothing else came from that IP')
  t.ok(blocked.length >= 1 && blocked.length <= windowsWithin(floodMs), `${blocked.length} summary rows for a ${Math.round(floodMs)} ms flood (at most one a window)`)
  t.equal(sum(blocked.map((r) => r.count)), FLOOD, 'their counts add up to the flood, none lost at close')
  t.match(blocked, Array(blocked.length).fill({ key_id: null, transport: 'http', namespace: null, outcome: 'refused', user_agent: 'flooder' }))

  const lines = auditLines(logs.lines(), ip)
  const blockedLines = lines.filter((l) => l.reason === 'TEMPORARILY_BLOCKED')
  t.same(blockedLines.map((l) => l.count), blocked.map((r) => r.count), 'one log line per summary row, with its count')
  t.same(lines.filter((l) => l.reason === 'UNAUTHORIZED').map((l) => l.count), [1, 1, 1, 1], 'one line per ordinary attempt')
  t.comment(`figures: ${FLOOD} blocked attempts in ${Math.round(floodMs)} ms → ${blocked.length} row(s), as many log lines`)
})

t.test('under a blocked flood the table grows by about one row a second, not one per attempt', async (t) => {
  const app = await buildApp(t, env, { logStream: logCollector().stream })
  const { apiKey } = await createKey(app)
  const ip = '10.61.0.2'
  await getBlocked(t, app, apiKey, ip)
  const floodFor = 3 * WINDOW_MS
  const started = performance.now()
  let attempts = 0
  let notBlocked = 0
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (performance.now() - started < floodFor) {
      if ((await requestToken(app, apiKey, ip)).statusCode !== 429) notBlocked++
      attempts++
    }
  }))
  const floodMs = performance.now() - started
  t.equal(notBlocked, 0, 'every attempt of the flood is refused')
  await app.audit.flush()
  const blocked = (await storedRows(app.sql, ip)).filter((r) => r.reason === 'TEMPORARILY_BLOCKED')
  t.equal(sum(blocked.map((r) => r.count)), attempts, `${attempts} attempts, all counted`)
  t.ok(blocked.length >= 2, `windows close while the flood goes on (${blocked.length} rows), not only at the end`)
  t.ok(blocked.length <= windowsWithin(floodMs), `${blocked.length} rows in ${Math.round(floodMs)} ms: at most one a window`)
  const rowsPerSecond = blocked.length / (floodMs / 1000)
  t.comment(`figures: blocked flood ${Math.round(attempts / (floodMs / 1000))} attempts/s → ${rowsPerSecond.toFixed(2)} audit rows/s`)
})

t.test('a socket flood past RATE_LIMIT_CONNECT is one summary row per namespace and window; the refusal before it stays one row', async (t) => {
  const app = await buildApp(t, { ...env, ANOMALY_MAX_FAILURES: '100000/minute', RATE_LIMIT_CONNECT: '1/minute' })
  const url = await listen(app)
  t.equal((await refusedHandshake(t, `${url}/chat`, { auth: { token: 'nope' } })).message, 'UNAUTHORIZED', 'the first handshake reaches the credential')
  const sent = { '/chat': 12, '/notification': 6 }
  for (const [namespace, n] of Object.entries(sent)) {
    const codes = await Promise.all(Array.from({ length: n }, async () => (await refusedHandshake(t, `${url}${namespace}`, { auth: { token: 'nope' } })).message))
    t.same([...new Set(codes)], ['RATE_LIMITED'], `${n} handshakes to ${namespace} refused before the token is read`)
  }
  t.equal(await attemptsCounted(app, { transport: 'socket', reason: 'RATE_LIMITED' }), 18, '/metrics counts every handshake')
  await app.audit.flush()
  const rows = (await app.sql<StoredRow[]>`select key_id, ip, transport, namespace, outcome, reason, user_agent, count from auth_attempts where transport = 'socket' order by id`)
  t.match(rows.filter((r) => r.reason === 'UNAUTHORIZED'), [{ namespace: '/chat', count: 1 }], 'the credential refusal: one row')
  for (const [namespace, n] of Object.entries(sent)) {
    const limited = rows.filter((r) => r.reason === 'RATE_LIMITED' && r.namespace === namespace)
    t.equal(sum(limited.map((r) => r.count)), n, `${namespace}: counts add up`)
    t.ok(limited.length >= 1 && limited.length < n, `${namespace}: ${limited.length} rows for ${n} attempts`)
  }
})

t.test('past 1,000 addresses in a window the rest fold into one ip "*" row; refusals naming a key stay one row each', async (t) => {
  const logs = logCollector()
  const app = await buildApp(t, env, { logStream: logs.stream })
  const { id } = await createKey(app)
  const addresses = 1200
  const waiting = app.audit.depth
  // Straight through the decorator, in one tick: every attempt lands in the same window, whatever the machine's load.
  for (let i = 0; i < addresses; i++) {
    app.audit.record({ keyId: null, ip: `10.62.${Math.floor(i / 250)}.${i % 250}`, transport: 'http', namespace: null, outcome: 'refused', reason: 'TEMPORARILY_BLOCKED', userAgent: 'many' })
  }
  for (let i = 0; i < 3; i++) app.audit.record({ keyId: id, ip: '10.62.9.1', transport: 'socket', namespace: '/chat', outcome: 'refused', reason: 'RATE_LIMITED', userAgent: 'keyed' })
  t.equal(app.audit.depth - waiting, 1000 + 1 + 3, 'memory holds 1,000 summaries, the fold and the 3 keyed rows')
  await app.audit.flush()
  const rows = await app.sql<StoredRow[]>`select key_id, ip, transport, namespace, outcome, reason, user_agent, count from auth_attempts where reason in ('TEMPORARILY_BLOCKED', 'RATE_LIMITED') order by id`
  const own = rows.filter((r) => r.reason === 'TEMPORARILY_BLOCKED' && r.ip !== '*')
  t.equal(own.length, 1000, 'the first 1,000 addresses keep a row of their own')
  t.ok(own.every((r) => r.count === 1 && r.user_agent === 'many'))
  t.same(rows.filter((r) => r.ip === '*').map((r) => [r.reason, r.count, r.user_agent]), [['TEMPORARILY_BLOCKED', addresses - 1000, null]], 'the rest: one folded row with their count')
  t.same(rows.filter((r) => r.reason === 'RATE_LIMITED').map((r) => [r.key_id, r.count]), Array(3).fill([id, 1]), 'a refusal with a key id is an ordinary row')
  const folded = logs.lines().map((l) => JSON.parse(l) as AuditLine).filter((l) => l.audit?.ip === '*')
  t.match(folded, [{ level: 40, audit: { count: addresses - 1000 } }], 'the fold is said once, at warn')
  t.equal(await attemptsCounted(app, { outcome: 'refused', reason: 'TEMPORARILY_BLOCKED' }), addresses, '/metrics counts every attempt')
})

t.test('embedded PGlite: the count column is migrated and the admin API shows summary rows with their count', async (t) => {
  const app = await buildApp(t, env, { embedded: true, logStream: logCollector().stream })
  const { id, apiKey } = await createKey(app)
  const ip = '10.63.0.1'
  await getBlocked(t, app, apiKey, ip)
  const flood = 200
  await Promise.all(Array.from({ length: flood }, async () => await requestToken(app, apiKey, ip)))
  await app.audit.flush()
  const res = await app.inject({ url: `/v1/audit?ip=${ip}&limit=100`, headers: adminHeaders })
  t.equal(res.statusCode, 200, res.body)
  const items = res.json<{ items: Array<{ keyId: string | null, reason: string | null, count: number }> }>().items
  const blocked = items.filter((r) => r.reason === 'TEMPORARILY_BLOCKED')
  t.equal(sum(blocked.map((r) => r.count)), flood, 'the summary counts add up to the flood')
  t.ok(blocked.length >= 1 && blocked.length <= 5, `${blocked.length} rows for ${flood} attempts`)
  t.same(items.filter((r) => r.reason === 'UNAUTHORIZED').map((r) => [r.keyId, r.count]), Array(4).fill([id, 1]), 'ordinary rows carry count 1')
  // A row standing for several attempts of the key: usage counts attempts, not rows.
  await app.sql`insert into auth_attempts (key_id, ip, transport, outcome, reason, count) values (${id}, ${ip}, 'http', 'allowed', null, 5)`
  const usage = await app.inject({ url: `/v1/keys/${id}/usage`, headers: adminHeaders })
  t.same(usage.json<{ counts: unknown }>().counts, { allowed: 5, refused: 4 }, 'usage counts are sums of count')
})
