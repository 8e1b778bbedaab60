import t from 'tap'
import { Webhook } from 'standardwebhooks'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { buildApp, listen, sleep } from '../helper.js'
import { ack, connectAs, eventually, eventsWithin, joinAnnounced, keyWithPolicy, nextEvent, ROOMY_LIMITS, socketAudit, tokenFor } from '../support/sockets.js'
import { answerJson, createRoute, httpBackend, type HttpAnswer } from '../support/backends.js'

type Tap = Parameters<typeof buildApp>[0]

const RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['order:*', 'message', 'note'], rooms: ['lobby', 'room:*'] },
  { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly'] }
]

interface Setup { app: FastifyInstance, url: string, apiKey: string, keyId: string, alice: ClientSocket, bob: ClientSocket }

/** alice and bob in lobby of /chat, on a gateway with real PostgreSQL and Redis. */
async function gateway (t: Tap, env: Record<string, string> = {}): Promise<Setup> {
  const app = await buildApp(t, { ...ROOMY_LIMITS, RATE_LIMIT_SOCKET: '1000/second', ...env })
  const key = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const [alice, bob] = await Promise.all([
    connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'alice')),
    connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'bob'))
  ])
  for (const socket of [alice, bob]) await joinAnnounced(socket, 'lobby')
  return { app, url, apiKey: key.apiKey, keyId: key.id, alice, bob }
}

const metric = async (app: FastifyInstance, line: RegExp): Promise<number> => {
  const text = await (await app.inject({ url: '/metrics' })).body
  const found = text.split('\n').find((l) => line.test(l))
  return found === undefined ? 0 : Number(found.split(' ').pop())
}

t.test('request mode: the backend gets the signed event and its answer is the ack', async (t) => {
  const { app, alice, keyId } = await gateway(t)
  const backend = await httpBackend(t, (call, res) => answerJson(200, { data: { echoed: call.event.data, by: call.event.principal.sub } })(call, res))
  const route = await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url } })
  t.match(route.secret, /^whsec_[A-Za-z0-9+/]{43}=$/, 'the secret is shown on creation')

  const answer = await ack(alice, 'order:create', { room: 'lobby', data: { item: 42 } })
  t.same(answer, { ok: true, id: answer.id, data: { echoed: { item: 42 }, by: 'alice' } })
  t.equal(backend.calls.length, 1)
  const [call] = backend.calls
  t.match(call.event, { id: answer.id, type: 'event', namespace: '/chat', room: 'lobby', event: 'order:create', data: { item: 42 }, socketId: alice.id, principal: { sub: 'alice', keyId, scopes: [], ns: null } })
  t.type(call.event.ts, 'number')
  t.equal(call.headers['webhook-id'], answer.id, 'webhook-id is the message id')
  // Verified by the Standard Webhooks reference library, as a backend would.
  const verified = new Webhook(route.secret).verify(call.body, call.headers as Record<string, string>)
  t.same(verified, call.event, 'the signature verifies with the standardwebhooks package')
  t.throws(() => new Webhook(route.secret).verify(call.body.replace('42', '43'), call.headers as Record<string, string>), 'a changed body does not verify')
  for (const header of ['authorization', 'cookie', 'x-api-key']) t.notOk(call.headers[header], `${header} is never forwarded`)
  t.notMatch(call.body, /eyJ/, 'no token in the body')
  t.equal(await metric(app, /^gateway_upstream_requests_total\{route="[^"]+",outcome="ok"\}/), 1)
})

t.test('a refusal with a listed code passes through; anything else is UNAVAILABLE without the backend\'s text', async (t) => {
  const { app, alice } = await gateway(t)
  const backend = await httpBackend(t)
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, timeoutMs: 300 })
  const cases: Array<[string, HttpAnswer, string, string | undefined]> = [
    ['a 403 refusal', answerJson(403, { error: { code: 'FORBIDDEN', message: 'not your order' } }), 'FORBIDDEN', 'not your order'],
    ['a 409 refusal', answerJson(409, { error: { code: 'CONFLICT', message: 'already placed' } }), 'CONFLICT', 'already placed'],
    ['a refusal with an unlisted code', answerJson(401, { error: { code: 'UNAUTHORIZED', message: 'secret-internal-detail' } }), 'UNAVAILABLE', undefined],
    ['a 500', answerJson(500, { error: { code: 'FORBIDDEN', message: 'secret-internal-detail' } }), 'UNAVAILABLE', undefined],
    ['a 200 that is not JSON', (_c, res) => { res.writeHead(200); res.end('secret-internal-detail') }, 'UNAVAILABLE', undefined],
    ['a 200 that is a JSON array', answerJson(200, ['secret-internal-detail']), 'UNAVAILABLE', undefined],
    ['a redirect (never followed)', (_c, res) => { res.writeHead(302, { location: 'http://127.0.0.1:1/' }); res.end() }, 'UNAVAILABLE', undefined],
    ['an answer nested too deep', answerJson(200, { data: JSON.parse('['.repeat(40) + ']'.repeat(40)) }), 'UNAVAILABLE', undefined],
    ['a backend that hangs up', (_c, res) => { res.destroy() }, 'UNAVAILABLE', undefined]
  ]
  for (const [what, answer, code, message] of cases) {
    backend.answer = answer
    const reply = await ack(alice, 'order:create', { room: 'lobby', data: {} })
    t.equal(reply.ok, false, what)
    t.equal(reply.error.code, code, what)
    if (message !== undefined) t.equal(reply.error.message, message, `${what}: its message`)
    else t.notMatch(JSON.stringify(reply), /secret-internal-detail/, `${what}: nothing of the backend's text`)
  }
})

t.test('a slow backend is UNAVAILABLE within timeoutMs', async (t) => {
  const { app, alice } = await gateway(t)
  const backend = await httpBackend(t, async (call, res) => { await sleep(3000); answerJson(200, { data: 1 })(call, res) })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, timeoutMs: 200 })
  const started = Date.now()
  const reply = await ack(alice, 'order:create', { room: 'lobby', data: {} })
  const took = Date.now() - started
  t.equal(reply.error?.code, 'UNAVAILABLE')
  t.ok(took >= 190, `not before the timeout (${took} ms)`)
  // SPEC: within timeoutMs + 100 ms. Measured 5–15 ms past the timeout here (ack round trip included); the bound keeps
  // well over 5× that for a loaded machine and still tells a timeout from waiting on the backend's 3 s.
  t.ok(took < 200 + 500, `answered at the timeout, not at the backend's 3 s (${took} ms)`)
  t.equal(await metric(app, /^gateway_upstream_requests_total\{route="[^"]+",outcome="timeout"\}/), 1)
})

t.test('the circuit breaker opens after 5 failures, refuses at once, probes after 5 s and closes', async (t) => {
  const { app, alice } = await gateway(t)
  const alerts: string[] = []
  app.alerts.onAlert((alert) => { alerts.push(`${alert.kind}:${alert.route}`) })
  const backend = await httpBackend(t, answerJson(500, {}))
  await createRoute(app, { name: 'orders', events: ['order:*'], upstream: { type: 'http', url: backend.url } })
  for (let i = 0; i < 5; i++) t.equal((await ack(alice, 'order:create', { room: 'lobby', data: i })).error.code, 'UNAVAILABLE')
  t.equal(backend.calls.length, 5)
  t.same(alerts, ['upstream_down:orders'])
  t.equal(await metric(app, /^gateway_upstream_breaker_open\{route="orders"\}/), 1)
  const reply = await ack(alice, 'order:create', { room: 'lobby', data: 'refused' })
  t.equal(reply.error.code, 'UNAVAILABLE')
  t.equal(backend.calls.length, 5, 'an open circuit sends nothing')
  // Refused in under a millisecond means without waiting on anything: the upstream answers synchronously.
  const [live] = app.forwarding.routes()
  const refusedNow = live.upstream.request(backend.calls[0].event)
  t.notOk(refusedNow instanceof Promise, 'an open circuit answers synchronously, not after a call')
  t.match(refusedNow, { ok: false, code: 'UNAVAILABLE' })
  t.equal(await metric(app, /^gateway_upstream_requests_total\{route="orders",outcome="breaker_open"\}/), 2)

  backend.answer = answerJson(200, { data: 'back' })
  await sleep(5200)
  t.same(await ack(alice, 'order:create', { room: 'lobby', data: 'probe' }), { ok: true, id: (backend.calls.at(-1)?.event.id as string | undefined) ?? 'x', data: 'back' }, 'the probe goes through')
  t.same(alerts, ['upstream_down:orders', 'upstream_up:orders'])
  t.equal(await metric(app, /^gateway_upstream_breaker_open\{route="orders"\}/), 0)
})

t.test('maxInFlight: calls beyond it are refused at once, not queued', async (t) => {
  const { app, alice } = await gateway(t)
  const release: Array<() => void> = []
  const backend = await httpBackend(t, async (call, res) => {
    await new Promise<void>((resolve) => release.push(resolve))
    answerJson(200, { data: call.event.data })(call, res)
  })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, maxInFlight: 2 })
  const first = [ack(alice, 'order:create', { room: 'lobby', data: 1 }), ack(alice, 'order:create', { room: 'lobby', data: 2 })]
  await eventually(() => backend.calls.length === 2, 10_000, 'two calls in flight')
  const third = await ack(alice, 'order:create', { room: 'lobby', data: 3 })
  t.equal(third.error.code, 'UNAVAILABLE', 'the third is refused while two are in flight')
  t.equal(backend.calls.length, 2)
  for (const done of release) done()
  t.same((await Promise.all(first)).map((r) => r.data), [1, 2])
  t.equal(await metric(app, /^gateway_upstream_requests_total\{route="[^"]+",outcome="overloaded"\}/), 1)
})

t.test('a packet refused by policy, envelope or limit never reaches the backend', async (t) => {
  const { app, alice } = await gateway(t, { RATE_LIMIT_SOCKET: '1000/second' })
  const backend = await httpBackend(t)
  await createRoute(app, { events: ['*'], upstream: { type: 'http', url: backend.url } })
  t.equal((await ack(alice, 'order:create', { room: 'room:readonly', data: 1 })).error.code, 'FORBIDDEN', 'denied by policy')
  t.equal((await ack(alice, 'forbidden-event', { room: 'lobby', data: 1 })).error.code, 'FORBIDDEN', 'an event the policy does not list')
  t.equal((await ack(alice, 'order:create', { room: 'lobby' })).error.code, 'VALIDATION_FAILED', 'no data')
  t.equal((await ack(alice, 'order:create', { room: 'lobby', data: 'x'.repeat(70_000) })).error.code, 'PAYLOAD_TOO_LARGE')
  t.equal((await ack(alice, '$connect', { room: 'lobby', data: 1 })).error.code, 'FORBIDDEN', 'a lifecycle name is reserved')
  t.equal(backend.calls.length, 0)

  const limited = await keyWithPolicy(app, RULES, { rateLimit: { max: 1, windowSeconds: 60 } })
  const carol = await connectAs(t, `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, '/chat', await tokenFor(app, limited.apiKey, 'carol'))
  t.equal((await ack(carol, 'order:create', { room: 'lobby', data: 1 })).ok, true)
  t.equal((await ack(carol, 'order:create', { room: 'lobby', data: 2 })).error.code, 'RATE_LIMITED', 'past the key\'s publish limit')
  t.equal(backend.calls.length, 1, 'only the packet within the limit went on')
})

t.test('relay: false keeps the event from the room, true relays it once the backend accepted', async (t) => {
  const { app, alice, bob } = await gateway(t)
  const backend = await httpBackend(t, (call, res) => {
    if (call.event.data === 'refuse') answerJson(403, { error: { code: 'FORBIDDEN', message: 'no' } })(call, res)
    else answerJson(200, { data: 'stored' })(call, res)
  })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, relay: false })
  await createRoute(app, { events: ['note'], upstream: { type: 'http', url: backend.url }, relay: true })
  const seen = eventsWithin(bob, 1500)
  await ack(alice, 'order:create', { room: 'lobby', data: 'private' })
  const noted = nextEvent(bob, 'note')
  const answer = await ack(alice, 'note', { room: 'lobby', data: 'public' })
  t.same(answer.data, 'stored')
  t.match(await noted, { id: answer.id, room: 'lobby', from: { sub: 'alice' }, data: 'public' }, 'relayed with the same id')
  t.equal((await ack(alice, 'note', { room: 'lobby', data: 'refuse' })).error.code, 'FORBIDDEN')
  const events = (await seen).map((e) => e.event)
  t.same(events, ['note'], 'bob saw the relayed note only: not the order, not the refused note')
  // Events no route takes are relayed as before.
  const message = nextEvent(bob, 'message')
  await ack(alice, 'message', { room: 'lobby', data: 'hi' })
  t.match(await message, { data: 'hi' })
})

t.test('notify mode: acked at once, retried with the same id until the backend takes it', async (t) => {
  const { app, alice } = await gateway(t)
  let failuresLeft = 2
  const backend = await httpBackend(t, (call, res) => {
    if (failuresLeft-- > 0) answerJson(503, {})(call, res)
    else answerJson(200, {})(call, res)
  })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, mode: 'notify' })
  const answer = await ack(alice, 'order:create', { room: 'lobby', data: 'audit-me' })
  t.same(answer, { ok: true, id: answer.id }, 'acked with the id, no data')
  await eventually(() => backend.calls.length === 3, 10_000, 'two retries')
  t.same(backend.calls.map((c) => c.headers['webhook-id']), [answer.id, answer.id, answer.id], 'the same webhook-id each time')
  t.same(new Set(backend.calls.map((c) => c.event.data)), new Set(['audit-me']))
  await sleep(600)
  t.equal(backend.calls.length, 3, 'no more calls once delivered')
})

t.test('notify mode: nothing is lost across a backend restart', async (t) => {
  const { app, alice } = await gateway(t)
  const backend = await httpBackend(t, answerJson(200, {}))
  const { port } = backend
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, mode: 'notify', timeoutMs: 500 })
  await backend.close()
  const ids: string[] = []
  for (let i = 0; i < 20; i++) ids.push((await ack(alice, 'order:create', { room: 'lobby', data: i })).id)
  await sleep(300)
  // The same port again, as a restarted backend would listen.
  const { createServer } = await import('node:http')
  const received = new Set<string>()
  const server = createServer((req, res) => {
    received.add(String(req.headers['webhook-id']))
    req.resume()
    req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}') })
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  await eventually(() => received.size === 20, 20_000, 'every queued event delivered')
  t.same([...received].sort(), [...ids].sort())
})

t.test('notify mode: the queue is drained at close', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS })
  const key = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const alice = await connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'alice'))
  const backend = await httpBackend(t, async (call, res) => { await sleep(100); answerJson(200, {})(call, res) })
  await createRoute(app, { events: ['order:*', '$disconnect'], upstream: { type: 'http', url: backend.url }, mode: 'notify', maxInFlight: 1 })
  for (let i = 0; i < 5; i++) await ack(alice, 'order:create', { room: 'lobby', data: i })
  t.ok(backend.calls.length < 5, 'still queued when the close starts')
  await app.close()
  t.equal(backend.calls.filter((c) => c.event.type === 'event').length, 5, 'every queued event went out before the close ended')
  t.match(backend.calls.find((c) => c.event.type === 'disconnect')?.event, { reason: 'shutdown', principal: { sub: 'alice' } }, 'and the $disconnect of the shutdown, with its reason')
})

t.test('$join decided by the backend; $connect refused by it; $leave and $disconnect told, with the reason', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS })
  const key = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const backend = await httpBackend(t, (call, res) => {
    const { type, room, principal } = call.event
    if (type === 'connect' && principal.sub === 'mallory') return answerJson(403, { error: { code: 'FORBIDDEN', message: 'banned' } })(call, res)
    if (type === 'join' && room !== 'room:alice') return answerJson(403, { error: { code: 'FORBIDDEN', message: 'not a member' } })(call, res)
    answerJson(200, { data: null })(call, res)
  })
  await createRoute(app, { events: ['$connect', '$join'], upstream: { type: 'http', url: backend.url } })
  await createRoute(app, { events: ['$leave', '$disconnect'], upstream: { type: 'http', url: backend.url }, mode: 'notify' })

  const refused = await connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'mallory')).then(() => undefined, (err: { message: string, data?: { code: string, message: string } }) => err)
  t.same(refused?.data, { code: 'FORBIDDEN', message: 'banned' }, 'connect_error with the backend\'s code and message')
  await eventually(async () => (await socketAudit(app)).some((row) => row.outcome === 'refused' && row.reason === 'FORBIDDEN'), 10_000, 'the refusal audited')

  const alice = await connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'alice'))
  t.same(await ack(alice, 'join', { room: 'room:alice' }), { ok: true })
  t.same(await ack(alice, 'join', { room: 'room:bob' }), { ok: false, error: { code: 'FORBIDDEN', message: 'not a member' } })
  t.same(await ack(alice, 'join', { room: 'secret' }).then((r) => r.error.code), 'FORBIDDEN', 'the policy refuses first')
  t.equal(backend.calls.filter((c) => c.event.room === 'secret').length, 0, 'a join the policy refused never reaches the backend')
  t.same(await ack(alice, 'leave', { room: 'room:alice' }), { ok: true })
  await eventually(() => backend.calls.some((c) => c.event.type === 'leave'), 10_000, '$leave')
  t.match(backend.calls.find((c) => c.event.type === 'leave')?.event, { room: 'room:alice', event: '$leave', principal: { sub: 'alice' } })
  await ack(alice, 'join', { room: 'room:alice' })
  alice.disconnect()
  await eventually(() => backend.calls.some((c) => c.event.type === 'disconnect'), 10_000, '$disconnect')
  t.match(backend.calls.find((c) => c.event.type === 'disconnect')?.event, { event: '$disconnect', reason: 'client', data: { rooms: ['room:alice'] }, principal: { sub: 'alice' } })

  // A revoked key's sockets go with reason revoked.
  await connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'bob'))
  await app.inject({ method: 'POST', url: `/v1/keys/${key.id}/revoke`, headers: { 'x-api-key': 'test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz' } })
  await eventually(() => backend.calls.some((c) => c.event.type === 'disconnect' && c.event.principal.sub === 'bob'), 10_000, 'bob\'s $disconnect')
  t.equal(backend.calls.find((c) => c.event.type === 'disconnect' && c.event.principal.sub === 'bob')?.event.reason, 'revoked')
})

t.test('$disconnect says when the gateway cut a flooder', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, RATE_LIMIT_SOCKET: '5/second' })
  const key = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const backend = await httpBackend(t)
  await createRoute(app, { events: ['$disconnect'], upstream: { type: 'http', url: backend.url }, mode: 'notify' })
  const reasonOf = (sub: string): string | undefined => backend.calls.find((c) => c.event.principal.sub === sub)?.event.reason

  const flooder = await connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'flooder'))
  for (let i = 0; i < 20; i++) flooder.emit('message', { room: 'lobby', data: i })
  await eventually(() => reasonOf('flooder') !== undefined, 10_000, 'the flooder\'s $disconnect')
  t.equal(reasonOf('flooder'), 'flood')
})

t.test('an answer in many chunks keeps its multi-byte characters; one over 1 MiB is UNAVAILABLE', async (t) => {
  const { app, alice } = await gateway(t)
  const text = 'é€😀'.repeat(20_000)
  const backend = await httpBackend(t, (_call, res) => {
    const bytes = Buffer.from(JSON.stringify({ data: text }))
    res.writeHead(200, { 'content-type': 'application/json' })
    // Cut at odd offsets, inside characters.
    for (let at = 0; at < bytes.length; at += 1001) res.write(bytes.subarray(at, at + 1001))
    res.end()
  })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url } })
  t.equal((await ack(alice, 'order:create', { room: 'lobby', data: 1 })).data, text)
  backend.answer = answerJson(200, { data: 'x'.repeat(1024 * 1024) })
  t.equal((await ack(alice, 'order:create', { room: 'lobby', data: 2 })).error.code, 'UNAVAILABLE')
})

t.test('a leave while the backend decides a join cancels that join', async (t) => {
  const { app, alice } = await gateway(t)
  let answerJoin: (() => void) | undefined
  const backend = await httpBackend(t, async (call, res) => {
    await new Promise<void>((resolve) => { answerJoin = resolve })
    answerJson(200, { data: null })(call, res)
  })
  await createRoute(app, { events: ['$join'], upstream: { type: 'http', url: backend.url } })
  const joined = ack(alice, 'join', { room: 'room:slow' })
  await eventually(() => answerJoin !== undefined, 10_000, 'the backend asked')
  t.same(await ack(alice, 'leave', { room: 'room:slow' }), { ok: true })
  answerJoin!()
  t.same(await joined, { ok: true })
  t.notOk(app.io.of('/chat').sockets.get(String(alice.id))?.rooms.has('room:slow'), 'not in the room it left')
})

t.test('notify mode: events queued for a route whose upstream is edited go out through the new one', async (t) => {
  const { app, alice } = await gateway(t)
  const down = await httpBackend(t)
  await down.close()
  const route = await createRoute(app, { name: 'queued', events: ['order:*'], upstream: { type: 'http', url: down.url }, mode: 'notify', timeoutMs: 500 })
  const ids: string[] = []
  for (let i = 0; i < 10; i++) ids.push((await ack(alice, 'order:create', { room: 'lobby', data: i })).id)
  const up = await httpBackend(t)
  const edited = await app.inject({ method: 'PUT', url: `/v1/routes/${route.id}`, headers: { 'x-api-key': 'test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz' }, payload: { name: 'queued', namespace: '/chat', events: ['order:*'], upstream: { type: 'http', url: up.url }, mode: 'notify' } })
  t.equal(edited.statusCode, 200)
  await eventually(() => new Set(up.calls.map((c) => c.event.id)).size === 10, 20_000, 'every queued event through the new upstream')
  t.same([...new Set(up.calls.map((c) => c.event.id))].sort(), [...ids].sort())
})

t.test('notify mode with relay: the room gets the event once it is queued, with the id the backend gets', async (t) => {
  const { app, alice, bob } = await gateway(t, { HISTORY_NAMESPACES: 'none' })
  const backend = await httpBackend(t)
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, mode: 'notify', relay: true })
  const relayed = nextEvent(bob, 'order:placed')
  const answer = await ack(alice, 'order:placed', { room: 'lobby', data: 'x' })
  t.same(answer, { ok: true, id: answer.id })
  t.match(await relayed, { id: answer.id, data: 'x', from: { sub: 'alice' } })
  await eventually(() => backend.calls.length === 1, 10_000, 'delivered to the backend')
  t.equal(backend.calls[0].event.id, answer.id)
})

t.test('in a namespace with history, a relayed routed event takes the room\'s id: the ack and the room agree, the backend keeps its call\'s id', async (t) => {
  const { app, alice, bob } = await gateway(t)
  const backend = await httpBackend(t)
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url }, mode: 'request', relay: true })
  const relayed = nextEvent(bob, 'order:placed')
  const answer = await ack(alice, 'order:placed', { room: 'lobby', data: 'x' })
  t.match(answer, { ok: true, id: /^[0-9]+-[0-9]+$/ })
  t.match(await relayed, { id: answer.id, data: 'x' })
  t.same((await ack(bob, 'history', { room: 'lobby' })).messages.map((m: { id: string }) => m.id), [answer.id], 'kept in the room\'s history')
  t.not(backend.calls[0].event.id, answer.id)
  t.equal(backend.calls[0].headers['webhook-id'], backend.calls[0].event.id)
})
