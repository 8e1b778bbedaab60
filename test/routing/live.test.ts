import t from 'tap'
import { Webhook } from 'standardwebhooks'
import { adminHeaders, buildApp, buildFrom, isolatedEnv, listen, realServers } from '../helper.js'
import { ack, connectAs, eventually, keyWithPolicy, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'
import { answerJson, createRoute, httpBackend } from '../support/backends.js'

const RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['order:*'], rooms: ['lobby'] }]

t.test('a route change is live on another instance within a second', { skip: realServers ? false : 'needs the real PostgreSQL and Redis of make test' }, async (t) => {
  const env = await isolatedEnv(t, { ...ROOMY_LIMITS })
  const [a, b] = await Promise.all([buildFrom(t, env), buildFrom(t, env)])
  const key = await keyWithPolicy(a, RULES)
  const alice = await connectAs(t, await listen(b), '/chat', await tokenFor(a, key.apiKey, 'alice'))
  const first = await httpBackend(t, answerJson(200, { data: 'first' }))
  const second = await httpBackend(t, answerJson(200, { data: 'second' }))

  const created = await createRoute(a, { name: 'orders', events: ['order:*'], upstream: { type: 'http', url: first.url } })
  const started = Date.now()
  await eventually(() => b.forwarding.routes().length === 1, 1000, 'the route on instance b within 1 s')
  t.ok(Date.now() - started <= 1000, `created: live on b after ${Date.now() - started} ms`)
  t.equal((await ack(alice, 'order:create', { room: 'lobby', data: 1 })).data, 'first', 'b forwards to the route created on a')

  const replaced = await a.inject({ method: 'PUT', url: `/v1/routes/${created.id}`, headers: adminHeaders, payload: { name: 'orders', namespace: '/chat', events: ['order:*'], upstream: { type: 'http', url: second.url } } })
  t.equal(replaced.statusCode, 200)
  await eventually(async () => (await ack(alice, 'order:create', { room: 'lobby', data: 2 })).data === 'second', 1000, 'the new upstream on b within 1 s')

  t.equal((await a.inject({ method: 'DELETE', url: `/v1/routes/${created.id}`, headers: adminHeaders })).statusCode, 204)
  await eventually(() => b.forwarding.routes().length === 0, 1000, 'deleted on b within 1 s')
  const relayed = await ack(alice, 'order:create', { room: 'lobby', data: 3 })
  t.same(relayed, { ok: true, id: relayed.id }, 'without a route the event is relayed again')
})

t.test('rotation: both secrets sign during the grace, the new one alone after', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS })
  const key = await keyWithPolicy(app, RULES)
  const alice = await connectAs(t, await listen(app), '/chat', await tokenFor(app, key.apiKey, 'alice'))
  const backend = await httpBackend(t, answerJson(200, { data: null }))
  const route = await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url } })
  const rotated = (await app.inject({ method: 'POST', url: `/v1/routes/${route.id}/rotate`, headers: adminHeaders, payload: { gracePeriodSeconds: 2 } })).json()

  await ack(alice, 'order:create', { room: 'lobby', data: 'in grace' })
  const inGrace = backend.calls.at(-1)!
  t.equal(String(inGrace.headers['webhook-signature']).split(' ').length, 2, 'two signatures')
  for (const [which, secret] of [['old', route.secret], ['new', rotated.secret]]) {
    t.doesNotThrow(() => new Webhook(secret as string).verify(inGrace.body, inGrace.headers as Record<string, string>), `the ${which} secret verifies`)
  }

  await eventually(async () => {
    await ack(alice, 'order:create', { room: 'lobby', data: 'after' })
    return String(backend.calls.at(-1)!.headers['webhook-signature']).split(' ').length === 1
  }, 10_000, 'one signature once the grace is over')
  const after = backend.calls.at(-1)!
  t.doesNotThrow(() => new Webhook(rotated.secret).verify(after.body, after.headers as Record<string, string>))
  t.throws(() => new Webhook(route.secret).verify(after.body, after.headers as Record<string, string>), 'the old secret no longer verifies')
})

t.test('routing on the embedded defaults (PGlite, in-process stores)', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS }, { embedded: true })
  const key = await keyWithPolicy(app, RULES)
  const alice = await connectAs(t, await listen(app), '/chat', await tokenFor(app, key.apiKey, 'alice'))
  const backend = await httpBackend(t, (call, res) => { answerJson(200, { data: { got: call.event.data } })(call, res) })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url } })
  t.same((await ack(alice, 'order:create', { room: 'lobby', data: 5 })).data, { got: 5 })
})

t.test('a connection carrying two namespaces: both hear the shutdown and both $disconnect say so', async (t) => {
  const { Manager } = await import('socket.io-client')
  const app = await buildApp(t, { ...ROOMY_LIMITS })
  const rules = [...RULES, { effect: 'allow', namespace: '/notification', actions: ['connect'] }]
  const key = await keyWithPolicy(app, rules)
  const url = await listen(app)
  const backend = await httpBackend(t)
  for (const namespace of ['/chat', '/notification']) {
    await createRoute(app, { namespace, events: ['$disconnect'], upstream: { type: 'http', url: backend.url }, mode: 'notify' })
  }
  const token = await tokenFor(app, key.apiKey, 'alice')
  const manager = new Manager(url, { transports: ['websocket'], reconnection: false })
  t.teardown(() => { manager.engine?.close() })
  const sockets = ['/chat', '/notification'].map((namespace) => manager.socket(namespace, { auth: { token } }))
  await Promise.all(sockets.map(async (socket) => { await new Promise<void>((resolve) => socket.once('connect', () => { resolve() })) }))
  const notices = sockets.map(async (socket) => await new Promise((resolve) => socket.once('shutdown', resolve)))
  await app.close()
  t.equal((await Promise.all(notices)).length, 2, 'each namespace socket heard shutdown')
  t.same(backend.calls.map((c) => [c.event.namespace, c.event.reason]).sort(), [['/chat', 'shutdown'], ['/notification', 'shutdown']])
})
