import { readdirSync } from 'node:fs'
import t from 'tap'
import { migrate } from '../../src/plugins/db.js'
import { adminHeaders, buildApp, createKey, isolatedEnv, buildFrom, realServers } from '../helper.js'

const MIGRATION_FILES = readdirSync(new URL('../../sql/', import.meta.url)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort()

t.test('migrations run once: a second migrate applies nothing', async (t) => {
  const app = await buildApp(t)
  const first = await app.sql<Array<{ name: string }>>`select name from schema_migrations order by name`
  t.same(first.map((r) => r.name), MIGRATION_FILES, 'every sql/ file is recorded once after the start')

  t.same(await migrate(app.sql), [], 'nothing is applied again')
  t.same(await migrate(app.sql), [], 'nor a third time')
  const after = await app.sql<Array<{ name: string, n: string }>>`select name, count(*) as n from schema_migrations group by name order by name`
  t.same(after.map((r) => r.name), MIGRATION_FILES)
  t.ok(after.every((r) => Number(r.n) === 1), 'each file is recorded exactly once')

  const tables = await app.sql<Array<{ table_name: string }>>`
    select table_name from information_schema.tables where table_schema = current_schema() order by table_name`
  for (const table of ['api_keys', 'auth_attempts', 'policies', 'schema_migrations']) {
    t.ok(tables.some((r) => r.table_name === table), `table ${table} exists`)
  }
})

t.test('two instances starting on one empty database migrate it once', { skip: !realServers && 'needs the real PostgreSQL' }, async (t) => {
  const env = await isolatedEnv(t)
  // allSettled: a failed start must not leave the other still booting while the test tears down.
  const started = await Promise.allSettled([buildFrom(t, env), buildFrom(t, env)])
  const failed = started.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason))
  t.same(failed, [], 'both instances start')
  if (failed.length > 0) return
  const [a, b] = started.map((s) => (s as PromiseFulfilledResult<Awaited<ReturnType<typeof buildFrom>>>).value)
  const rows = await a.sql<Array<{ name: string }>>`select name from schema_migrations order by name`
  t.same(rows.map((r) => r.name), MIGRATION_FILES)
  t.equal((await b.inject('/health/ready')).statusCode, 200)
})

t.test('the embedded PGlite database serves the same API', async (t) => {
  const app = await buildApp(t, {}, { embedded: true })
  t.equal(app.config.databaseUrl, undefined, 'no DATABASE_URL: embedded')
  t.equal(app.store.kind, 'memory', 'no REDIS_URL: in-process store')
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 200, ready.body)
  t.same(ready.json(), { status: 'ok', checks: { postgres: 'ok' } })

  const { id, apiKey } = await createKey(app, { name: 'embedded', scopes: ['publish'] })
  t.match(apiKey, new RegExp(`^spk_${id}_[A-Za-z0-9_-]{43,}$`))
  const got = await app.inject({ url: `/v1/keys/${id}`, headers: adminHeaders })
  t.equal(got.statusCode, 200, got.body)
  t.equal(got.json().name, 'embedded')
  t.same(got.json().scopes, ['publish'])
  const token = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey } })
  t.equal(token.statusCode, 200, token.body)
  t.same(await migrate(app.sql), [], 'migrations are idempotent on PGlite too')
})
