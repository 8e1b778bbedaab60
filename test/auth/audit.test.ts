import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import t from 'tap'

type Tap = { teardown: (fn: () => unknown) => void }
import { ADMIN_KEY, adminHeaders, buildApp, buildFrom, createKey, isolatedEnv, logCollector, sleep } from '../helper.js'
import { outcome, requestToken } from '../support/auth.js'
import { eventually, WAIT_MS } from '../support/sockets.js'

const env = { RATE_LIMIT_TOKEN: '100000/minute', ANOMALY_MAX_FAILURES: '100000/minute' }

interface Row { id: string, at: string, keyId: string | null, ip: string | null, transport: string, namespace: string | null, outcome: string, reason: string | null, userAgent: string | null, count: number }

/** The rows of attempts made with one user agent, oldest first, straight from the table. */
async function rowsBy (app: FastifyInstance, userAgent: string): Promise<Array<Record<string, unknown>>> {
  await app.audit.flush()
  return await app.sql`select key_id, ip, transport, namespace, outcome, reason, user_agent, count from auth_attempts where user_agent = ${userAgent} order by id`
}

async function auditPage (app: FastifyInstance, query: string): Promise<{ items: Row[], nextCursor: string | null }> {
  const res = await app.inject({ url: `/v1/audit?${query}`, headers: { ...adminHeaders, 'user-agent': 'audit-reader' } })
  if (res.statusCode !== 200) throw new Error(`GET /v1/audit?${query}: ${res.statusCode} ${res.body}`)
  return res.json()
}

t.test('every attempt is one row, naming the key when it exists', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app, { scopes: ['publish'] })
  const admin = await createKey(app, { scopes: ['admin'] })
  const as = (ua: string): Record<string, string> => ({ 'user-agent': ua })

  t.equal((await requestToken(app, apiKey, '10.7.0.1', {}, as('token-ok'))).statusCode, 200)
  t.equal(outcome(await requestToken(app, `spk_${id}_wrong-secret`, '10.7.0.2', {}, as('token-wrong-secret'))), '401 UNAUTHORIZED')
  t.equal(outcome(await requestToken(app, 'spk_00000000-0000-4000-8000-000000000000_wrong', '10.7.0.3', {}, as('token-unknown-id'))), '401 UNAUTHORIZED')
  t.equal(outcome(await requestToken(app, 'garbage', '10.7.0.4', {}, as('token-garbage'))), '401 UNAUTHORIZED')
  t.equal(outcome(await requestToken(app, undefined, '10.7.0.4', {}, as('token-none'))), '401 UNAUTHORIZED')
  t.equal((await app.inject({ url: '/v1/keys', headers: { 'x-api-key': admin.apiKey, ...as('admin-ok') }, remoteAddress: '10.7.0.5' })).statusCode, 200)
  t.equal((await app.inject({ url: '/v1/keys', headers: { 'x-api-key': ADMIN_KEY, ...as('admin-root') }, remoteAddress: '10.7.0.5' })).statusCode, 200)
  t.equal(outcome(await app.inject({ url: '/v1/keys', headers: { 'x-api-key': `spk_${admin.id}_wrong`, ...as('admin-wrong') }, remoteAddress: '10.7.0.6' })), '401 UNAUTHORIZED')
  t.equal(outcome(await app.inject({ url: '/v1/keys', headers: { 'x-api-key': apiKey, ...as('admin-not-admin') }, remoteAddress: '10.7.0.7' })), '403 FORBIDDEN')

  const row = (keyId: string | null, ip: string, result: string, reason: string | null, ua: string): Record<string, unknown> =>
    ({ key_id: keyId, ip, transport: 'http', namespace: null, outcome: result, reason, user_agent: ua, count: 1 })
  t.same(await rowsBy(app, 'token-ok'), [row(id, '10.7.0.1', 'allowed', null, 'token-ok')])
  t.same(await rowsBy(app, 'token-wrong-secret'), [row(id, '10.7.0.2', 'refused', 'UNAUTHORIZED', 'token-wrong-secret')], 'a wrong secret names the key')
  t.same(await rowsBy(app, 'token-unknown-id'), [row(null, '10.7.0.3', 'refused', 'UNAUTHORIZED', 'token-unknown-id')], 'an unknown id is null')
  t.same(await rowsBy(app, 'token-garbage'), [row(null, '10.7.0.4', 'refused', 'UNAUTHORIZED', 'token-garbage')])
  t.same(await rowsBy(app, 'token-none'), [row(null, '10.7.0.4', 'refused', 'UNAUTHORIZED', 'token-none')], 'no key at all is an attempt too')
  t.same(await rowsBy(app, 'admin-ok'), [row(admin.id, '10.7.0.5', 'allowed', null, 'admin-ok')])
  t.same(await rowsBy(app, 'admin-root'), [row(null, '10.7.0.5', 'allowed', null, 'admin-root')], 'ADMIN_API_KEY is no key of the table')
  t.same(await rowsBy(app, 'admin-wrong'), [row(admin.id, '10.7.0.6', 'refused', 'UNAUTHORIZED', 'admin-wrong')])
  t.same(await rowsBy(app, 'admin-not-admin'), [row(id, '10.7.0.7', 'refused', 'FORBIDDEN', 'admin-not-admin')], 'a key without scope admin is refused, and the row says so')
})

t.test('a token used on an admin endpoint is an attempt too', async (t) => {
  const app = await buildApp(t, env)
  const admin = await createKey(app, { scopes: ['admin'] })
  const token = (await requestToken(app, admin.apiKey)).json<{ accessToken: string }>().accessToken
  t.equal((await app.inject({ url: '/v1/keys', headers: { authorization: `Bearer ${token}`, 'user-agent': 'bearer-ok' } })).statusCode, 200)
  t.equal((await app.inject({ url: '/v1/keys', headers: { authorization: `Bearer ${token}x`, 'user-agent': 'bearer-bad' } })).statusCode, 401)
  t.match(await rowsBy(app, 'bearer-ok'), [{ key_id: admin.id, outcome: 'allowed' }])
  t.match(await rowsBy(app, 'bearer-bad'), [{ key_id: null, outcome: 'refused', reason: 'UNAUTHORIZED' }])
})

/** One token attempt of a burst: every other one with a wrong secret, each from its own address. */
async function burstAttempt (app: FastifyInstance, apiKey: string, i: number): Promise<number> {
  const key = i % 2 === 0 ? apiKey : `${apiKey}x`
  return (await requestToken(app, key, `10.8.${Math.floor(i / 250)}.${i % 250}`, {}, { 'user-agent': 'burst' })).statusCode
}

/** Counts the burst rows with a connection of its own: the app's is closed by then. */
async function countBurstRows (t: Tap, databaseUrl: string): Promise<{ n: number, allowed: number }> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await sql.end() })
  const [row] = await sql<Array<{ n: string, allowed: string }>>`
    select count(*) as n, count(*) filter (where outcome = 'allowed') as allowed from auth_attempts where user_agent = 'burst'`
  return { n: Number(row.n), allowed: Number(row.allowed) }
}

t.test('a burst of 1,000 attempts then close: every row is written', async (t) => {
  const shared = await isolatedEnv(t, env)
  const app = await buildFrom(t, shared)
  const { apiKey } = await createKey(app)
  const statuses = await Promise.all(Array.from({ length: 999 }, async (_, i) => await burstAttempt(app, apiKey, i)))
  // The last one alone, once the batches before it are written, so that its row is still queued when close begins.
  while (app.audit.depth > 0) await sleep(5)
  statuses.push(await burstAttempt(app, apiKey, 999))
  // On a loaded 2-core machine hundreds of the 999 at once wait past a backing service's deadline (Redis
  // commands 700 ms, key lookups 1.5 s) and are answered 503: an attempt too, with its row.
  const count = (status: number): number => statuses.filter((s) => s === status).length
  t.same(statuses.filter((s, i) => s !== 503 && s !== (i % 2 === 0 ? 200 : 401)), [], `the right secret 200, the wrong one 401, or 503 (${count(200)} 200, ${count(401)} 401, ${count(503)} 503)`)
  t.ok(count(200) > 0 && count(401) > 0, 'both outcomes in the burst')
  await app.close()
  t.same(await countBurstRows(t, shared.DATABASE_URL), { n: 1000, allowed: count(200) }, 'exactly 1,000 rows, none lost, none doubled')
})

t.test('attempts still in flight when close begins are never dropped', async (t) => {
  const shared = await isolatedEnv(t, { ...env, LOG_LEVEL: 'warn' })
  const logs = logCollector()
  const app = await buildFrom(t, shared, logs.stream)
  const { apiKey } = await createKey(app)
  const pending = Array.from({ length: 1000 }, async (_, i) => await burstAttempt(app, apiKey, i))
  const closing = app.close()
  const statuses = await Promise.all(pending)
  await closing
  t.equal(statuses.filter((s) => s === 200 || s === 401 || s === 503).length, 1000, 'each attempt was answered')
  const { n } = await countBurstRows(t, shared.DATABASE_URL)
  const logged = logs.lines().map((l) => JSON.parse(l) as { auditRow?: { user_agent?: string } }).filter((l) => l.auditRow?.user_agent === 'burst').length
  t.equal(n + logged, 1000, `every attempt is a row in PostgreSQL (${n}) or, past the final flush, in the log (${logged})`)
})

t.test('GET /v1/audit filters and pages newest first', async (t) => {
  const app = await buildApp(t, env)
  const one = await createKey(app)
  const two = await createKey(app)
  for (let i = 0; i < 5; i++) await requestToken(app, one.apiKey, '10.6.0.1')
  for (let i = 0; i < 3; i++) await requestToken(app, `${one.apiKey}x`, '10.6.0.2')
  await app.audit.flush()
  await sleep(20)
  const since = new Date()
  await sleep(20)
  for (let i = 0; i < 4; i++) await requestToken(app, two.apiKey, '10.6.0.3')
  await requestToken(app, `${two.apiKey}x`, '10.6.0.1')
  await app.audit.flush()

  const byKey = await auditPage(app, `keyId=${one.id}`)
  t.equal(byKey.items.length, 8)
  t.ok(byKey.items.every((r) => r.keyId === one.id))
  t.equal(byKey.nextCursor, null, 'one page: no cursor')
  t.same(Object.keys(byKey.items[0]).sort(), ['at', 'count', 'id', 'ip', 'keyId', 'namespace', 'outcome', 'reason', 'transport', 'userAgent'])
  t.ok(byKey.items.every((r) => r.count === 1), 'an ordinary attempt is a row of count 1')

  const refused = await auditPage(app, `keyId=${one.id}&outcome=refused`)
  t.equal(refused.items.length, 3)
  t.ok(refused.items.every((r) => r.outcome === 'refused' && r.reason === 'UNAUTHORIZED' && r.ip === '10.6.0.2'))
  t.equal((await auditPage(app, 'outcome=allowed&ip=10.6.0.3')).items.length, 4)

  const fromIp = await auditPage(app, 'ip=10.6.0.1')
  t.same(fromIp.items.map((r) => r.keyId), [two.id, one.id, one.id, one.id, one.id, one.id], 'by IP, newest first')

  const recent = await auditPage(app, `since=${encodeURIComponent(since.toISOString())}&ip=10.6.0.3`)
  t.equal(recent.items.length, 4)
  const sinceAll = await auditPage(app, `since=${encodeURIComponent(since.toISOString())}`)
  t.ok(sinceAll.items.every((r) => new Date(r.at) >= since), 'nothing before since')
  t.ok(sinceAll.items.every((r) => r.keyId !== one.id), 'none of the earlier attempts')

  // Paging: every row once, ids strictly decreasing, the same rows as the table holds.
  await app.audit.flush()
  const all = (await app.sql<Array<{ id: string }>>`select id from auth_attempts order by id desc`).map((r) => String(r.id))
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page = await auditPage(app, `limit=3${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`)
    seen.push(...page.items.map((r) => r.id))
    cursor = page.nextCursor
    pages++
  } while (cursor !== null && pages < 100)
  // The GETs above add rows newer than `all`; paging from the top sees them first.
  const walked = seen.filter((id) => BigInt(id) <= BigInt(all[0]))
  t.same(walked, all, 'every row, newest first, no duplicate, none skipped')
  t.equal(new Set(seen).size, seen.length, 'no duplicates')
  t.ok(seen.every((id, i) => i === 0 || BigInt(id) < BigInt(seen[i - 1])), 'strictly newest first')

  const filteredPages: string[] = []
  const first = await auditPage(app, `keyId=${one.id}&limit=5`)
  t.type(first.nextCursor, 'string')
  filteredPages.push(...first.items.map((r) => r.id))
  const second = await auditPage(app, `keyId=${one.id}&limit=5&cursor=${encodeURIComponent(first.nextCursor as string)}`)
  filteredPages.push(...second.items.map((r) => r.id))
  t.equal(second.nextCursor, null)
  t.same(filteredPages, byKey.items.map((r) => r.id), 'a filter holds across pages')

  for (const bad of ['cursor=not-a-cursor', `cursor=${Buffer.from('["x"]').toString('base64url')}`, 'limit=0', 'limit=101', 'outcome=maybe', 'since=yesterday', 'unknown=1']) {
    const res = await app.inject({ url: `/v1/audit?${bad}`, headers: adminHeaders })
    t.equal(outcome(res), '400 VALIDATION_FAILED', bad)
  }
  t.equal(outcome(await app.inject({ url: '/v1/audit', headers: { 'x-api-key': one.apiKey } })), '403 FORBIDDEN', 'admin only')
})

t.test('GET /v1/keys/:id/usage lists the key rows with counts', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app)
  const other = await createKey(app)
  for (let i = 0; i < 4; i++) await requestToken(app, apiKey, '10.6.1.1')
  for (let i = 0; i < 2; i++) await requestToken(app, `spk_${id}_wrong`, '10.6.1.2')
  await requestToken(app, other.apiKey, '10.6.1.1')
  await app.audit.flush()

  const res = await app.inject({ url: `/v1/keys/${id}/usage?limit=4`, headers: adminHeaders })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json<{ items: Row[], nextCursor: string | null, counts: { allowed: number, refused: number } }>()
  t.same(body.counts, { allowed: 4, refused: 2 }, 'counts over all the key rows, not the page')
  t.equal(body.items.length, 4)
  t.ok(body.items.every((r) => r.keyId === id))
  t.same(body.items.map((r) => r.outcome), ['refused', 'refused', 'allowed', 'allowed'], 'newest first')
  const rest = await app.inject({ url: `/v1/keys/${id}/usage?limit=4&cursor=${encodeURIComponent(body.nextCursor as string)}`, headers: adminHeaders })
  t.equal(rest.json().items.length, 2)
  t.equal(rest.json().nextCursor, null)
  t.equal(outcome(await app.inject({ url: '/v1/keys/no-such-key/usage', headers: adminHeaders })), '404 NOT_FOUND')
  t.equal(outcome(await app.inject({ url: '/v1/keys/bad_id!/usage', headers: adminHeaders })), '404 NOT_FOUND', 'a malformed id is 404')
})

t.test('last_used_at is set after a successful token', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app)
  const lastUsed = async (): Promise<string | null> => (await app.inject({ url: `/v1/keys/${id}`, headers: adminHeaders })).json<{ lastUsedAt: string | null }>().lastUsedAt
  t.equal(await lastUsed(), null)
  await requestToken(app, `spk_${id}_wrong`)
  await sleep(1300)
  t.equal(await lastUsed(), null, 'a failed attempt is no use')
  const before = Date.now()
  t.equal((await requestToken(app, apiKey)).statusCode, 200)
  // Written by the background flush (every second): polled, with a deadline a loaded machine cannot miss.
  await eventually(async () => await lastUsed() !== null, WAIT_MS, 'last_used_at').catch(() => {})
  const seen = await lastUsed()
  t.type(seen, 'string', `flushed by the background flush (${Date.now() - before} ms after the use)`)
  const stampedAfter = new Date(seen as string).getTime() - before
  t.ok(Math.abs(stampedAfter) < 2500, `about when it was used (the flush's now(), ${stampedAfter} ms after the use)`)
})

t.test('queued rows reach PostgreSQL without anyone flushing (the background flush)', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  for (let i = 0; i < 3; i++) await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey, 'user-agent': 'timed-flush' } })
  const queuedAt = Date.now()
  const written = async (): Promise<number> => (await app.sql<Array<{ n: number }>>`select count(*)::int as n from auth_attempts where user_agent = 'timed-flush'`)[0].n
  // Polled rather than read once after a sleep: the flush runs every 250 ms, later on a loaded machine.
  await eventually(async () => await written() === 3, WAIT_MS, 'the rows in PostgreSQL').catch(() => {})
  t.equal(await written(), 3, `the background flush wrote them (${Date.now() - queuedAt} ms after the last attempt)`)
})
