import t from 'tap'
import { buildApp, realServers } from '../helper.js'

t.test('/health/live and /health/ready answer without credentials', async (t) => {
  const app = await buildApp(t)
  const live = await app.inject('/health/live')
  t.equal(live.statusCode, 200)
  t.same(live.json(), { status: 'ok' })
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ok', checks: realServers ? { postgres: 'ok', redis: 'ok' } : { postgres: 'ok' } })
})

t.test('/health/ready is 503 naming Redis when Redis is unreachable', { skip: !realServers && 'needs the real Redis' }, async (t) => {
  const app = await buildApp(t)
  // This instance's own command connection goes away; PostgreSQL stays.
  app.redisStore?.client.disconnect(false)
  const started = Date.now()
  const ready = await app.inject('/health/ready')
  t.ok(Date.now() - started < 2000, `answers within the check timeout (${Date.now() - started} ms)`)
  t.equal(ready.statusCode, 503)
  t.same(ready.json(), { status: 'fail', checks: { postgres: 'ok', redis: 'fail' } })
})

t.test('/health/ready is 503 naming PostgreSQL when PostgreSQL is unreachable', async (t) => {
  const app = await buildApp(t)
  await app.sql.end({ timeout: 1 })
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().status, 'fail')
  t.equal(ready.json().checks.postgres, 'fail')
})
