import t from 'tap'
import { build } from '../../src/app.js'
import { parseConfig } from '../../src/config.js'
import { adminHeaders, buildApp, createKey, isolatedEnv, logCollector } from '../helper.js'
import { assertError } from '../support/assert.js'

// SPEC §4: every error body is { statusCode, code, error, message } with a §6 code, whatever produced it.

t.test('routing, parsing and media-type errors have the error shape', async (t) => {
  const app = await buildApp(t)
  assertError(t, await app.inject('/nope'), 404, 'NOT_FOUND', 'unknown route')
  assertError(t, await app.inject({ method: 'DELETE', url: '/v1/keys', headers: adminHeaders }), 404, 'NOT_FOUND', 'unknown method on a known path')
  assertError(t, await app.inject({ url: '/v1/keys/a/b/c', headers: adminHeaders }), 404, 'NOT_FOUND', 'too deep a path')
  const notFound = await app.inject('/nope?secret=1')
  t.notMatch(notFound.json().message, /secret=1/, 'the query string is not echoed')
  assertError(t, await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: '{' }), 400, 'VALIDATION_FAILED', 'invalid JSON')
  assertError(t, await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: '' }), 400, 'VALIDATION_FAILED', 'empty JSON body')
  const media = await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'application/xml' }, payload: '<key/>' })
  t.equal(media.json().code, 'VALIDATION_FAILED', 'an unsupported media type')
  assertError(t, media, media.statusCode, 'VALIDATION_FAILED', 'an unsupported media type: body.statusCode matches the status')
  assertError(t, await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x'.repeat(70_000) }) }), 413, 'PAYLOAD_TOO_LARGE', 'body over BODY_LIMIT')
  assertError(t, await app.inject({ url: '/v1/keys' }), 401, 'UNAUTHORIZED', 'no credential')
})

t.test('a conflict has the error shape', async (t) => {
  const app = await buildApp(t)
  const { id } = await createKey(app)
  await app.inject({ method: 'POST', url: `/v1/keys/${id}/revoke`, headers: adminHeaders })
  assertError(t, await app.inject({ method: 'POST', url: `/v1/keys/${id}/rotate`, headers: adminHeaders, payload: {} }), 409, 'CONFLICT', 'rotating a revoked key')
})

t.test('the token rate limit answers 429 RATE_LIMITED with Retry-After', async (t) => {
  const app = await buildApp(t, { RATE_LIMIT_TOKEN: '2/minute' })
  const { apiKey } = await createKey(app)
  for (let i = 0; i < 2; i++) t.equal((await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey } })).statusCode, 200)
  const limited = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey } })
  assertError(t, limited, 429, 'RATE_LIMITED', 'third token in the window')
  t.match(limited.headers['retry-after'], /^[1-9][0-9]*$/, 'Retry-After in whole seconds')
  t.ok(Number(limited.headers['retry-after']) <= 60)
})

t.test('an anomaly block answers 429 TEMPORARILY_BLOCKED with Retry-After', async (t) => {
  const app = await buildApp(t, { ANOMALY_MAX_FAILURES: '2/minute', ANOMALY_BLOCK_SECONDS: '30' })
  for (let i = 0; i < 3; i++) {
    assertError(t, await app.inject({ url: '/v1/keys', headers: { 'x-api-key': 'spk_nobody_wrong' } }), 401, 'UNAUTHORIZED', `failure ${i + 1}`)
  }
  const blocked = await app.inject({ url: '/v1/keys', headers: adminHeaders })
  assertError(t, blocked, 429, 'TEMPORARILY_BLOCKED', 'even the right key, once blocked')
  t.match(blocked.headers['retry-after'], /^[1-9][0-9]*$/)
  t.ok(Number(blocked.headers['retry-after']) <= 30)
})

t.test('PostgreSQL gone: 503 UNAVAILABLE with the error shape', async (t) => {
  const app = await buildApp(t)
  await app.sql.end({ timeout: 1 })
  const res = await app.inject({ url: '/v1/keys', headers: adminHeaders })
  assertError(t, res, 503, 'UNAVAILABLE', 'listing keys without a database')
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().checks.postgres, 'fail')
})

t.test('an unexpected error is a 500 that tells nothing of its cause', async (t) => {
  const logs = logCollector()
  const env = await isolatedEnv(t, { LOG_LEVEL: 'error' })
  const app = build(parseConfig(env), { logStream: logs.stream })
  t.teardown(async () => { await app.close() })
  // A route of this test only, to reach the error handler with a plain Error.
  app.get('/test-only/boom', async () => { throw new Error('internal detail: table xyz') })
  app.get('/test-only/teapot', async () => { throw Object.assign(new Error('I am a teapot'), { statusCode: 418 }) })
  await app.ready()
  const res = await app.inject('/test-only/boom')
  assertError(t, res, 500, 'UNAVAILABLE', 'a plain Error')
  t.equal(res.json().error, 'Internal Server Error')
  t.notMatch(res.body, /internal detail|xyz|stack/, 'neither the message nor the stack reaches the client')
  t.ok(logs.lines().some((l) => l.includes('internal detail')), 'the cause is logged')
  const teapot = await app.inject('/test-only/teapot')
  t.equal(teapot.json().code, 'VALIDATION_FAILED', 'another 4xx maps to a §6 code')
  assertError(t, teapot, 400, 'VALIDATION_FAILED', 'another 4xx is answered as the §6 400')
})
