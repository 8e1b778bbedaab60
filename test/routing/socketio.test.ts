import { createHmac } from 'node:crypto'
import t from 'tap'
import { buildApp, listen } from '../helper.js'
import { ack, connectAs, eventually, keyWithPolicy, nextEvent, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'
import { createRoute, socketIoBackend } from '../support/backends.js'

const RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['order:*'], rooms: ['lobby'] }]

/** What a backend checks of the handshake: HMAC-SHA256 of `gateway.timestamp` with the secret's bytes. */
function handshakeSignature (secret: string, gateway: string, timestamp: number): string {
  return 'v1,' + createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${gateway}.${timestamp}`).digest('base64')
}

t.test('a Socket.IO backend: signed handshake, spark:event answered through its ack, spark:publish delivered', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS })
  const key = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const backend = await socketIoBackend(t, (event) => {
    const { data } = event as { data: { item: number } }
    return data.item < 0 ? { error: { code: 'VALIDATION_FAILED', message: 'negative item' } } : { data: { accepted: data.item } }
  })
  const route = await createRoute(app, { name: 'orders-io', events: ['order:*'], upstream: { type: 'socketio', url: backend.url, namespace: '/spark' } })
  await eventually(() => backend.gateways().length === 1, 10_000, 'the gateway connected to the backend')

  const [auth] = backend.handshakes as Array<{ gateway: string, timestamp: number, signature: string }>
  t.type(auth.gateway, 'string')
  t.ok(Math.abs(auth.timestamp - Date.now() / 1000) < 60, 'a fresh timestamp')
  t.equal(auth.signature, handshakeSignature(route.secret, auth.gateway, auth.timestamp), 'the handshake is signed over gateway.timestamp')

  const [alice, bob] = await Promise.all([
    connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'alice')),
    connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'bob'))
  ])
  await ack(bob, 'join', { room: 'lobby' })
  const answer = await ack(alice, 'order:create', { room: 'lobby', data: { item: 7 } })
  t.same(answer, { ok: true, id: answer.id, data: { accepted: 7 } })
  t.match(backend.events[0], { id: answer.id, type: 'event', event: 'order:create', room: 'lobby', principal: { sub: 'alice' } })
  t.same((await ack(alice, 'order:create', { room: 'lobby', data: { item: -1 } })).error, { code: 'VALIDATION_FAILED', message: 'negative item' })

  // The backend publishes back through the gateway's pipeline, within the route's namespace.
  const [gatewaySocket] = backend.gateways()
  const shipped = nextEvent(bob, 'order:shipped')
  const published = await gatewaySocket.timeout(10_000).emitWithAck('spark:publish', { namespace: '/chat', room: 'lobby', event: 'order:shipped', data: { item: 7 } })
  t.match(published, { ok: true, id: String })
  t.match(await shipped, { id: published.id, room: 'lobby', from: { sub: 'route:orders-io', route: 'orders-io' }, data: { item: 7 } })
  t.match(await gatewaySocket.timeout(10_000).emitWithAck('spark:publish', { namespace: '/notification', room: 'lobby', event: 'x', data: 1 }), { ok: false, error: { code: 'FORBIDDEN' } }, 'another namespace is refused')
  t.match(await gatewaySocket.timeout(10_000).emitWithAck('spark:publish', { namespace: '/chat', room: 'lobby', event: 'gateway:error', data: 1 }), { ok: false, error: { code: 'FORBIDDEN' } }, 'a reserved event is refused')
  t.match(await gatewaySocket.timeout(10_000).emitWithAck('spark:publish', { room: 'lobby' }), { ok: false, error: { code: 'VALIDATION_FAILED' } }, 'a malformed publish is refused')

  // While the backend is down, the route answers UNAVAILABLE at once, and five of those open the breaker.
  const alerts: string[] = []
  app.alerts.onAlert((alert) => { alerts.push(`${alert.kind}:${alert.route}`) })
  await backend.close()
  await eventually(() => !app.forwarding.routes()[0].upstream.transport.ready, 10_000, 'the gateway saw the backend go')
  const started = Date.now()
  t.equal((await ack(alice, 'order:create', { room: 'lobby', data: { item: 1 } })).error.code, 'UNAVAILABLE')
  t.ok(Date.now() - started < 1000, 'at once, not after timeoutMs (5 s)')
  for (let i = 0; i < 4; i++) await ack(alice, 'order:create', { room: 'lobby', data: { item: 1 } })
  t.same(alerts, ['upstream_down:orders-io'], 'a backend that stays down raises upstream_down')
})

t.test('a Socket.IO upstream that refused the handshake is tried again until it accepts', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS })
  const key = await keyWithPolicy(app, RULES)
  const alice = await connectAs(t, await listen(app), '/chat', await tokenFor(app, key.apiKey, 'alice'))
  const backend = await socketIoBackend(t, () => ({ data: 'reached' }), { refuseFirst: 2 })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'socketio', url: backend.url, namespace: '/spark' } })
  await eventually(() => backend.gateways().length === 1, 15_000, 'connected after two refused handshakes')
  t.equal(backend.handshakes.length, 1)
  t.equal((await ack(alice, 'order:create', { room: 'lobby', data: { item: 1 } })).data, 'reached')
})
