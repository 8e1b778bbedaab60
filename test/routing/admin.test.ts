import t from 'tap'
import { adminHeaders, buildApp, createKey } from '../helper.js'
import { createRoute } from '../support/backends.js'

const HTTP = { type: 'http', url: 'http://127.0.0.1:4000/spark' }

t.test('routes: create (secret once), read, list, replace, rotate, delete', async (t) => {
  const app = await buildApp(t)
  const created = await createRoute(app, { name: 'orders', events: ['order:*', '$join'], upstream: HTTP })
  t.match(created, { id: String, name: 'orders', namespace: '/chat', events: ['order:*', '$join'], upstream: HTTP, mode: 'request', timeoutMs: 5000, maxInFlight: 256, relay: false, secret: /^whsec_/ })

  const read = await app.inject({ url: `/v1/routes/${created.id}`, headers: adminHeaders })
  t.equal(read.statusCode, 200)
  t.notOk('secret' in read.json(), 'never returned again')
  t.notMatch(read.body, created.secret)
  const list = await app.inject({ url: '/v1/routes?limit=1', headers: adminHeaders })
  t.equal(list.json().items.length, 1)
  t.notMatch(list.body, /whsec_/)

  const replaced = await app.inject({ method: 'PUT', url: `/v1/routes/${created.id}`, headers: adminHeaders, payload: { name: 'orders', namespace: '/chat', events: ['order:*'], upstream: HTTP, mode: 'notify', relay: true } })
  t.equal(replaced.statusCode, 200)
  t.match(replaced.json(), { mode: 'notify', relay: true, events: ['order:*'] })
  t.equal(app.forwarding.routes()[0].mode, 'notify', 'live on this instance at once')

  const rotated = await app.inject({ method: 'POST', url: `/v1/routes/${created.id}/rotate`, headers: adminHeaders, payload: { gracePeriodSeconds: 60 } })
  t.equal(rotated.statusCode, 200)
  t.match(rotated.json().secret, /^whsec_/)
  t.not(rotated.json().secret, created.secret)
  t.equal((await app.inject({ method: 'POST', url: `/v1/routes/${created.id}/rotate`, headers: adminHeaders })).statusCode, 200, 'no body means no grace')

  t.equal((await app.inject({ method: 'DELETE', url: `/v1/routes/${created.id}`, headers: adminHeaders })).statusCode, 204)
  t.equal((await app.inject({ url: `/v1/routes/${created.id}`, headers: adminHeaders })).statusCode, 404)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/routes/${created.id}`, headers: adminHeaders })).statusCode, 404)
  t.equal((await app.inject({ url: '/v1/routes/not%20an%20id', headers: adminHeaders })).statusCode, 404)
  t.same(app.forwarding.routes(), [])
})

t.test('routes: the list pages newest first to the end', async (t) => {
  const app = await buildApp(t)
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await createRoute(app, { name: `r${i}`, events: ['e'], upstream: HTTP })).id)
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const query: string = cursor === null ? '' : `&cursor=${cursor}`
    const res = await app.inject({ url: `/v1/routes?limit=2${query}`, headers: adminHeaders })
    t.equal(res.statusCode, 200)
    const page: { items: Array<{ id: string }>, nextCursor: string | null } = res.json()
    seen.push(...page.items.map((item) => item.id))
    cursor = page.nextCursor
  } while (cursor !== null)
  t.same(seen, [...ids].reverse())
  t.equal((await app.inject({ url: '/v1/routes?cursor=not-a-cursor', headers: adminHeaders })).statusCode, 400)
})

t.test('routes: validation', async (t) => {
  const app = await buildApp(t)
  const base = { name: 'r', namespace: '/chat', events: ['order:*'], upstream: HTTP }
  const refused: Array<[string, Record<string, unknown>]> = [
    ['an unknown namespace', { namespace: '/nope' }],
    ['no events', { events: [] }],
    ['an inner *', { events: ['a*b'] }],
    ['an unknown lifecycle event', { events: ['$boot'] }],
    ['$disconnect in request mode', { events: ['$disconnect'] }],
    ['$leave in request mode', { events: ['$leave'], mode: 'request' }],
    ['an unknown upstream type', { upstream: { type: 'grpc', url: 'http://x' } }],
    ['a non-http URL', { upstream: { type: 'http', url: 'file:///etc/passwd' } }],
    ['a URL with credentials', { upstream: { type: 'http', url: 'http://user:pass@127.0.0.1/' } }],
    ['a socketio upstream without namespace', { upstream: { type: 'socketio', url: 'http://127.0.0.1:1' } }],
    ['a timeout of 0', { timeoutMs: 0 }],
    ['a string timeout (no coercion)', { timeoutMs: '100' }],
    ['an unknown property', { retries: 3 }],
    ['a name with spaces', { name: 'my route' }]
  ]
  for (const [what, change] of refused) {
    const res = await app.inject({ method: 'POST', url: '/v1/routes', headers: adminHeaders, payload: { ...base, ...change } })
    t.equal(res.statusCode, 400, what)
    t.equal(res.json().code, 'VALIDATION_FAILED', what)
  }
  t.equal((await app.inject({ method: 'POST', url: '/v1/routes', headers: adminHeaders, payload: { ...base, events: ['$disconnect', '$leave'], mode: 'notify' } })).statusCode, 201)
  const duplicate = await app.inject({ method: 'POST', url: '/v1/routes', headers: adminHeaders, payload: base })
  t.equal(duplicate.statusCode, 409, 'names are unique')
})

t.test('routes are admin only', async (t) => {
  const app = await buildApp(t)
  const { apiKey } = await createKey(app, { scopes: ['publish'] })
  t.equal((await app.inject({ url: '/v1/routes' })).statusCode, 401)
  t.equal((await app.inject({ url: '/v1/routes', headers: { 'x-api-key': apiKey } })).statusCode, 403)
  const spec = (await app.inject({ url: '/docs/json' })).json()
  t.ok(spec.paths['/v1/routes'] !== undefined && spec.paths['/v1/routes/{id}/rotate'] !== undefined, 'in the OpenAPI document')
})
