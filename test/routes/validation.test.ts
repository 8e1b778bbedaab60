import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, buildApp, createKey, createPolicy } from '../helper.js'
import { assertError } from '../support/assert.js'

const ENV = { RATE_LIMIT_TOKEN: '10000/minute', ANOMALY_MAX_FAILURES: '10000/minute' }
const BODY_LIMIT = 65536
const tooLarge = (field: string): string => JSON.stringify({ [field]: 'x'.repeat(BODY_LIMIT + 10) })

type Method = 'POST' | 'PATCH' | 'PUT'
/** A body sent as-is (a string is sent raw, as JSON text or not). */
type Body = unknown

/** Everything a refused request must leave as it was: keys (secrets included), policies. */
async function snapshot (app: FastifyInstance): Promise<string> {
  const keys = await app.sql`select * from api_keys order by id`
  const policies = await app.sql`select * from policies order by id`
  return JSON.stringify({ keys, policies })
}

async function send (app: FastifyInstance, method: Method, url: string, body: Body, headers: Record<string, string> = adminHeaders) {
  const payload = typeof body === 'string' ? body : JSON.stringify(body)
  return await app.inject({ method, url, payload, headers: { 'content-type': 'application/json', ...headers } })
}

async function expectRefused (t: Test, app: FastifyInstance, method: Method, url: string, bodies: Body[], headers?: Record<string, string>): Promise<void> {
  const before = await snapshot(app)
  for (const body of bodies) {
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    const res = await send(app, method, url, body, headers)
    const code = text.length > BODY_LIMIT ? 'PAYLOAD_TOO_LARGE' : 'VALIDATION_FAILED'
    assertError(t, res, code === 'PAYLOAD_TOO_LARGE' ? 413 : 400, code, `${method} ${url} ${text.slice(0, 80)}`)
  }
  t.equal(await snapshot(app), before, `${method} ${url}: nothing changed`)
}

// Bodies that are not even the right JSON value, refused by every JSON route.
const NOT_OBJECTS: Body[] = ['{"name": ', '{name: "x"}', '', 'null', '[]', '"text"', '42', 'true', '{"name":"x"}{"name":"y"}']

t.test('POST /v1/keys refuses malformed bodies', async (t) => {
  const app = await buildApp(t, ENV)
  await expectRefused(t, app, 'POST', '/v1/keys', [
    ...NOT_OBJECTS,
    {},
    { scopes: ['publish'] },
    { name: 'x', scopes: 'admin' },
    { name: 'x', scopes: ['root'] },
    { name: 'x', scopes: ['admin', 'admin'] },
    { name: 'x', scopes: null },
    { name: 1 },
    { name: '' },
    { name: null },
    { name: 'x'.repeat(129) },
    { name: 'x', extra: true },
    { name: 'x', apiKey: 'spk_mine_secret' },
    { name: 'x', id: 'chosen-id' },
    { name: 'x', revokedAt: null },
    { name: 'x', policyId: 5 },
    { name: 'x', allowedIps: '10.0.0.0/8' },
    { name: 'x', allowedIps: ['not-an-ip'] },
    { name: 'x', allowedIps: ['10.0.0.0/33'] },
    { name: 'x', rateLimit: { max: 1 } },
    { name: 'x', rateLimit: { max: '10', windowSeconds: 60 } },
    { name: 'x', rateLimit: { max: 10, windowSeconds: 60, burst: 5 } },
    { name: 'x', rateLimit: { max: 0, windowSeconds: 60 } },
    { name: 'x', maxConnections: '5' },
    { name: 'x', maxConnections: 1.5 },
    { name: 'x', maxConnections: 0 },
    { name: 'x', expiresAt: 'tomorrow' },
    { name: 'x', expiresAt: 1_900_000_000 },
    { name: 'x', expiresAt: '2026-02-30T00:00:00Z' },
    { name: 'x', expiresAt: '0000-01-01T00:00:00Z' },
    '{"name":"x","__proto__":{"scopes":["admin"]}}',
    '{"name":"x","constructor":{"prototype":{"admin":true}}}',
    tooLarge('name')
  ])
  const form = await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'name=x' })
  assertError(t, form, form.statusCode === 415 ? 415 : 400, 'VALIDATION_FAILED', 'a form body')
  const text = await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'text/plain' }, payload: '{"name":"x"}' })
  t.equal(text.json().code, 'VALIDATION_FAILED', 'a text/plain body')
  const [{ n }] = await app.sql<Array<{ n: string }>>`select count(*) as n from api_keys`
  t.equal(Number(n), 0, 'no key was created')
  // Known bug outside this suite's files: src/net/ip.ts isCidr takes ipaddr.js' legacy forms, so "10" allows 0.0.0.10.
  for (const ip of ['10', '127.1', '0x7f.0.0.1']) {
    const res = await send(app, 'POST', '/v1/keys', { name: 'x', allowedIps: [ip] })
    t.equal(res.statusCode, 400, `allowedIps ["${ip}"] is refused`)
  }
})

t.test('an unusual but valid expiresAt is stored, never a 500', async (t) => {
  const app = await buildApp(t, ENV)
  for (const expiresAt of ['2099-01-01T00:00:00+23:59', '2099-01-01t00:00:00z', '2099-01-01T00:00:00.123456789Z']) {
    const res = await send(app, 'POST', '/v1/keys', { name: 'odd time', expiresAt })
    t.equal(res.statusCode, 201, `${expiresAt} (${res.body.slice(0, 200)})`)
    if (res.statusCode === 201) t.equal(Date.parse(res.json().expiresAt), Date.parse(expiresAt.toUpperCase()), `${expiresAt} is stored as the same instant`)
  }
})

t.test('PATCH /v1/keys/:id refuses malformed bodies', async (t) => {
  const app = await buildApp(t, ENV)
  const { id } = await createKey(app, { name: 'target', scopes: ['publish'] })
  await expectRefused(t, app, 'PATCH', `/v1/keys/${id}`, [
    ...NOT_OBJECTS,
    {},
    { scopes: 'admin' },
    { name: null },
    { name: '' },
    { scopes: ['publish', 'superuser'] },
    { id: 'other' },
    { revokedAt: null },
    { secretHash: 'AAAA' },
    { lastUsedAt: null },
    { name: 'ok', unknown: 1 },
    { allowedIps: ['999.1.1.1'] },
    { maxConnections: -1 },
    { rateLimit: { windowSeconds: 60 } },
    { expiresAt: 'yesterday' },
    { expiresAt: '0000-06-01T00:00:00Z' },
    tooLarge('name')
  ])
})

t.test('POST /v1/keys/:id/rotate refuses malformed bodies and keeps the secret', async (t) => {
  const app = await buildApp(t, ENV)
  const { id, apiKey } = await createKey(app, { name: 'target', scopes: ['publish'] })
  await expectRefused(t, app, 'POST', `/v1/keys/${id}/rotate`, [
    '{"gracePeriodSeconds": ', 'null', '[]', '"text"', '5',
    { gracePeriodSeconds: '60' },
    { gracePeriodSeconds: -1 },
    { gracePeriodSeconds: 1.5 },
    { gracePeriodSeconds: 30 * 86_400 + 1 },
    { gracePeriodSeconds: null },
    { grace: 60 },
    { gracePeriodSeconds: 60, name: 'x' },
    tooLarge('gracePeriodSeconds')
  ])
  const token = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey } })
  t.equal(token.statusCode, 200, 'the original secret still works')
})

const goodRule = { effect: 'allow', namespace: '/chat', actions: ['connect'] }

function badPolicyBodies (): Body[] {
  return [
    ...NOT_OBJECTS,
    {},
    { name: 'p' },
    { rules: [] },
    { name: '', rules: [] },
    { name: 5, rules: [] },
    { name: 'p', rules: {} },
    { name: 'p', rules: 'allow all' },
    { name: 'p', rules: [], extra: true },
    { name: 'p', rules: [{ ...goodRule, effect: 'maybe' }] },
    { name: 'p', rules: [{ ...goodRule, actions: 'connect' }] },
    { name: 'p', rules: [{ ...goodRule, actions: [] }] },
    { name: 'p', rules: [{ ...goodRule, actions: ['connect', 'connect'] }] },
    { name: 'p', rules: [{ ...goodRule, actions: ['delete'] }] },
    { name: 'p', rules: [{ ...goodRule, namespace: 'chat' }] },
    { name: 'p', rules: [{ ...goodRule, rooms: ['room:*:admin'] }] },
    { name: 'p', rules: [{ ...goodRule, rooms: [] }] },
    { name: 'p', rules: [{ ...goodRule, events: 'message' }] },
    { name: 'p', rules: [{ ...goodRule, priority: 1 }] },
    { name: 'p', rules: [{ effect: 'allow', actions: ['connect'] }] },
    { name: 'p', rules: Array.from({ length: 201 }, () => goodRule) },
    tooLarge('name')
  ]
}

t.test('POST /v1/policies refuses malformed bodies', async (t) => {
  const app = await buildApp(t, ENV)
  await expectRefused(t, app, 'POST', '/v1/policies', badPolicyBodies())
  const [{ n }] = await app.sql<Array<{ n: string }>>`select count(*) as n from policies`
  t.equal(Number(n), 0, 'no policy was created')
})

t.test('PUT /v1/policies/:id refuses malformed bodies and keeps the policy', async (t) => {
  const app = await buildApp(t, ENV)
  const id = await createPolicy(app, [goodRule], 'kept')
  await expectRefused(t, app, 'PUT', `/v1/policies/${id}`, badPolicyBodies())
  const got = await app.inject({ url: `/v1/policies/${id}`, headers: adminHeaders })
  t.same(got.json().rules, [goodRule])
})

t.test('POST /auth/token refuses malformed bodies and issues nothing', async (t) => {
  const app = await buildApp(t, { ...ENV, JWT_TTL: '600' })
  const { apiKey } = await createKey(app, { scopes: ['publish'] })
  const withKey = { 'x-api-key': apiKey }
  const bodies: Body[] = [
    '{"ttl": ', '[]', '"text"', '42',
    { ttl: '60' },
    { ttl: 0 },
    { ttl: 1.5 },
    { ttl: 601 },
    { namespaces: '/chat' },
    { namespaces: ['chat'] },
    { namespaces: [] },
    { namespaces: ['/chat', '/chat'] },
    { sub: '' },
    { sub: 'user 1' },
    { sub: 5 },
    { scope: 'admin' },
    { apiKey: 5 },
    { kid: 'someone-else' },
    tooLarge('sub')
  ]
  for (const body of bodies) {
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    const res = await send(app, 'POST', '/auth/token', body, withKey)
    const [status, code] = text.length > BODY_LIMIT ? [413, 'PAYLOAD_TOO_LARGE' as const] : [400, 'VALIDATION_FAILED' as const]
    assertError(t, res, status, code, `POST /auth/token ${text.slice(0, 60)}`)
    t.notOk(res.body.includes('accessToken'), 'no token issued')
  }
  const nullBody = await send(app, 'POST', '/auth/token', 'null', withKey)
  t.equal(nullBody.statusCode, 400, 'a JSON null body is refused like any other non-object')
  // Without a valid key the answer is 401, whatever the body.
  for (const body of [{ ttl: '60' }, { namespaces: 'all' }, { extra: true }, { apiKey: 5 }, { apiKey: 'spk_x_y', ttl: -1 }]) {
    assertError(t, await send(app, 'POST', '/auth/token', body, {}), 401, 'UNAUTHORIZED', `POST /auth/token ${JSON.stringify(body)} without a key`)
  }
  // Even a body that cannot be parsed: it carries no credential. With a header key, it is the body's fault: 400.
  for (const body of ['{"apiKey":', 'not json']) {
    assertError(t, await send(app, 'POST', '/auth/token', body, {}), 401, 'UNAUTHORIZED', `an unparsable ${body.length}-byte body without a key`)
  }
  // Over BODY_LIMIT it is 413 whatever the credentials (SPEC §2).
  assertError(t, await send(app, 'POST', '/auth/token', 'x'.repeat(70_000), {}), 413, 'PAYLOAD_TOO_LARGE', 'an oversized body without a key')
  assertError(t, await send(app, 'POST', '/auth/token', JSON.stringify({ apiKey: 'spk_x_y', pad: 'x'.repeat(70_000) }), {}), 413, 'PAYLOAD_TOO_LARGE', 'an oversized body carrying a key')
  assertError(t, await send(app, 'POST', '/auth/token', '{"ttl":', withKey), 400, 'VALIDATION_FAILED', 'an unparsable body with a header key')
  assertError(t, await send(app, 'POST', '/auth/token', 'x'.repeat(70_000), withKey), 413, 'PAYLOAD_TOO_LARGE', 'an oversized body with a header key')
  const ok = await send(app, 'POST', '/auth/token', { ttl: 60, namespaces: ['/chat'] }, withKey)
  t.equal(ok.statusCode, 200, 'a valid body is accepted')
  t.equal(ok.json().expiresIn, 60)
})

t.test('BODY_LIMIT is the configured size', async (t) => {
  const app = await buildApp(t, { ...ENV, BODY_LIMIT: '1024' })
  const res = await send(app, 'POST', '/v1/keys', { name: 'n'.repeat(100), allowedIps: Array.from({ length: 80 }, (_, i) => `10.0.0.${i}`) })
  assertError(t, res, 413, 'PAYLOAD_TOO_LARGE', 'a 1.2 kB body over a 1 kB limit')
  t.equal((await send(app, 'POST', '/v1/keys', { name: 'small' })).statusCode, 201, 'a small body passes')
})

t.test('GET /docs/json is an OpenAPI document of the routes', async (t) => {
  const app = await buildApp(t, ENV)
  const res = await app.inject('/docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.match(doc.openapi, /^3\./)
  t.equal(doc.info.title, 'Spark Gateway')
  const expected: Record<string, string[]> = {
    '/auth/token': ['post'],
    '/auth/revoke': ['post'],
    '/.well-known/jwks.json': ['get'],
    '/v1/keys': ['get', 'post'],
    '/v1/keys/{id}': ['get', 'patch'],
    '/v1/keys/{id}/revoke': ['post'],
    '/v1/keys/{id}/rotate': ['post'],
    '/v1/keys/{id}/usage': ['get'],
    '/v1/policies': ['get', 'post'],
    '/v1/policies/{id}': ['delete', 'get', 'put'],
    '/v1/audit': ['get'],
    '/health/live': ['get'],
    '/health/ready': ['get']
  }
  for (const [path, methods] of Object.entries(expected)) {
    t.ok(doc.paths[path] !== undefined, `${path} is documented`)
    for (const method of methods) t.ok(doc.paths[path]?.[method] !== undefined, `${method.toUpperCase()} ${path} is documented`)
  }
  const create = doc.paths['/v1/keys']?.post
  t.ok(create?.requestBody?.content?.['application/json']?.schema !== undefined, 'POST /v1/keys documents its body')
  t.ok(create?.responses?.['201'] !== undefined, 'and its 201 response')
  t.ok(create?.responses?.['400'] !== undefined, 'and its 400 response')
  t.notMatch(JSON.stringify(doc.paths['/v1/keys'].get.responses['200']), /secretHash|secret_hash/, 'the key view has no hash')
})
