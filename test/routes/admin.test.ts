import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { ADMIN_KEY, adminHeaders, buildApp, createKey, createPolicy, mintToken } from '../helper.js'
import { assertError } from '../support/assert.js'

// Dozens of refusals from one address: the anomaly block and token limit are not what this file tests.
const ENV = { RATE_LIMIT_TOKEN: '10000/minute', ANOMALY_MAX_FAILURES: '10000/minute' }

interface Endpoint { method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: Record<string, unknown>, ok: number }

/** Every admin endpoint, with a valid request on fresh targets and the status it succeeds with. */
async function adminEndpoints (app: FastifyInstance): Promise<Endpoint[]> {
  const { id: keyId } = await createKey(app, { name: 'target' })
  const policyId = await createPolicy(app, [])
  return [
    { method: 'POST', url: '/v1/keys', payload: { name: 'new key' }, ok: 201 },
    { method: 'GET', url: '/v1/keys', ok: 200 },
    { method: 'GET', url: `/v1/keys/${keyId}`, ok: 200 },
    { method: 'PATCH', url: `/v1/keys/${keyId}`, payload: { name: 'renamed' }, ok: 200 },
    { method: 'GET', url: `/v1/keys/${keyId}/usage`, ok: 200 },
    { method: 'POST', url: `/v1/keys/${keyId}/rotate`, payload: { gracePeriodSeconds: 0 }, ok: 200 },
    { method: 'POST', url: `/v1/keys/${keyId}/revoke`, ok: 200 },
    { method: 'POST', url: '/v1/policies', payload: { name: `p-${keyId}`, rules: [] }, ok: 201 },
    { method: 'GET', url: '/v1/policies', ok: 200 },
    { method: 'GET', url: `/v1/policies/${policyId}`, ok: 200 },
    { method: 'PUT', url: `/v1/policies/${policyId}`, payload: { name: `q-${keyId}`, rules: [] }, ok: 200 },
    { method: 'DELETE', url: `/v1/policies/${policyId}`, ok: 204 },
    { method: 'GET', url: '/v1/audit', ok: 200 },
    { method: 'GET', url: '/v1/audit?outcome=refused&limit=5', ok: 200 }
  ]
}

/** What a refused call must leave untouched. */
async function snapshot (app: FastifyInstance): Promise<string> {
  const keys = await app.sql`select id, name, secret_hash, revoked_at, scopes from api_keys order by id`
  const policies = await app.sql`select id, name, rules, updated_at from policies order by id`
  return JSON.stringify({ keys, policies })
}

t.test('every admin endpoint refuses a request without credentials with 401', async (t) => {
  const app = await buildApp(t, ENV)
  const endpoints = await adminEndpoints(app)
  const before = await snapshot(app)
  for (const { method, url, payload } of endpoints) {
    assertError(t, await app.inject({ method, url, payload }), 401, 'UNAUTHORIZED', `${method} ${url} with no credential`)
    assertError(t, await app.inject({ method, url, payload, headers: { 'x-api-key': '' } }), 401, 'UNAUTHORIZED', `${method} ${url} with an empty key`)
    assertError(t, await app.inject({ method, url, payload, headers: { authorization: 'Bearer not.a.token' } }), 401, 'UNAUTHORIZED', `${method} ${url} with a garbage token`)
    assertError(t, await app.inject({ method, url, payload, headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_KEY}`).toString('base64')}` } }), 401, 'UNAUTHORIZED', `${method} ${url} with Basic auth`)
    assertError(t, await app.inject({ method, url, payload, headers: { 'x-api-key': `${ADMIN_KEY}x` } }), 401, 'UNAUTHORIZED', `${method} ${url} with a near-miss root key`)
  }
  t.equal(await snapshot(app), before, 'nothing changed')
})

t.test('a key or token without scope admin is 403 on every admin endpoint', async (t) => {
  const app = await buildApp(t, ENV)
  const { apiKey } = await createKey(app, { name: 'publisher', scopes: ['publish', 'token:delegate'] })
  const token = await mintToken(app, apiKey)
  const endpoints = await adminEndpoints(app)
  const before = await snapshot(app)
  for (const { method, url, payload } of endpoints) {
    assertError(t, await app.inject({ method, url, payload, headers: { 'x-api-key': apiKey } }), 403, 'FORBIDDEN', `${method} ${url} with a publish key`)
    assertError(t, await app.inject({ method, url, payload, headers: { authorization: `Bearer ${token}` } }), 403, 'FORBIDDEN', `${method} ${url} with a publish token`)
  }
  t.equal(await snapshot(app), before, 'nothing changed')
})

t.test('ADMIN_API_KEY, an admin key and a token minted from one all work', async (t) => {
  const app = await buildApp(t, ENV)
  const { id: adminKeyId, apiKey: adminKey } = await createKey(app, { name: 'admin', scopes: ['admin'] })
  const adminToken = await mintToken(app, adminKey)
  const credentials: Array<[string, Record<string, string>]> = [
    ['ADMIN_API_KEY', adminHeaders],
    ['an admin key', { 'x-api-key': adminKey }],
    ['a token from an admin key', { authorization: `Bearer ${adminToken}` }],
    ['a token, lower-case scheme', { authorization: `bearer ${adminToken}` }]
  ]
  for (const [what, headers] of credentials) {
    for (const { method, url, payload, ok } of await adminEndpoints(app)) {
      const res = await app.inject({ method, url, payload, headers })
      t.equal(res.statusCode, ok, `${what}: ${method} ${url} (${res.body.slice(0, 200)})`)
    }
  }

  // The root credential manages keys but does not mint tokens.
  assertError(t, await app.inject({ method: 'POST', url: '/auth/token', headers: adminHeaders }), 403, 'FORBIDDEN', 'ADMIN_API_KEY at /auth/token')

  // Taking scope admin away from the key takes it from its live tokens too.
  const demoted = await app.inject({ method: 'PATCH', url: `/v1/keys/${adminKeyId}`, headers: adminHeaders, payload: { scopes: ['publish'] } })
  t.equal(demoted.statusCode, 200)
  assertError(t, await app.inject({ url: '/v1/keys', headers: { authorization: `Bearer ${adminToken}` } }), 403, 'FORBIDDEN', 'a token of a demoted key')
  assertError(t, await app.inject({ url: '/v1/keys', headers: { 'x-api-key': adminKey } }), 403, 'FORBIDDEN', 'a demoted key')

  await app.inject({ method: 'POST', url: `/v1/keys/${adminKeyId}/revoke`, headers: adminHeaders })
  assertError(t, await app.inject({ url: '/v1/keys', headers: { authorization: `Bearer ${adminToken}` } }), 401, 'KEY_REVOKED', 'a token of a revoked key')
  assertError(t, await app.inject({ url: '/v1/keys', headers: { 'x-api-key': adminKey } }), 401, 'KEY_REVOKED', 'a revoked key')
})

t.test('credentials are checked before the body', async (t) => {
  const app = await buildApp(t, ENV)
  const { apiKey } = await createKey(app, { scopes: ['publish'] })
  const { id: keyId } = await createKey(app)
  const policyId = await createPolicy(app, [])
  const before = await snapshot(app)
  const bad: Array<{ method: 'POST' | 'PATCH' | 'PUT', url: string, payload: string, type?: string }> = [
    { method: 'POST', url: '/v1/keys', payload: JSON.stringify({ scopes: 'admin', extra: true }) },
    { method: 'POST', url: '/v1/keys', payload: '{"name": ' },
    { method: 'POST', url: '/v1/keys', payload: 'name=x', type: 'application/x-www-form-urlencoded' },
    { method: 'PATCH', url: `/v1/keys/${keyId}`, payload: JSON.stringify({}) },
    { method: 'POST', url: `/v1/keys/${keyId}/rotate`, payload: JSON.stringify({ gracePeriodSeconds: 'forever' }) },
    { method: 'POST', url: '/v1/policies', payload: JSON.stringify({ rules: 'all' }) },
    { method: 'PUT', url: `/v1/policies/${policyId}`, payload: '[1,2' },
    { method: 'POST', url: '/v1/keys', payload: JSON.stringify({ name: 'x'.repeat(70_000) }) }
  ]
  for (const { method, url, payload, type } of bad) {
    const headers = { 'content-type': type ?? 'application/json' }
    const what = `${method} ${url} ${payload.slice(0, 40)}`
    assertError(t, await app.inject({ method, url, payload, headers }), 401, 'UNAUTHORIZED', `${what}, no key`)
    assertError(t, await app.inject({ method, url, payload, headers: { ...headers, 'x-api-key': apiKey } }), 403, 'FORBIDDEN', `${what}, non-admin key`)
  }
  t.equal(await snapshot(app), before, 'nothing changed')
})
