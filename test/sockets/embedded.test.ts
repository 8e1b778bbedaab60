import t from 'tap'
import { buildApp, listen } from '../helper.js'
import { connectAs, disconnection, eventsWithin, keyWithPolicy, nextEvent, recordEvents, revokeKey, ROOMY_LIMITS, tokenFor, WAIT_MS } from '../support/sockets.js'

const CHAT_RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }]

t.test('on the embedded stores (PGlite, in-process adapter) sockets relay, refuse and are revoked alike', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS, { embedded: true })
  t.equal(app.store.kind, 'memory', 'no Redis: the in-process store')
  const { id, apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const alice = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
  const bob = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
  for (const socket of [alice, bob]) t.same(await socket.timeout(WAIT_MS).emitWithAck('join', { room: 'lobby' }), { ok: true })

  const received = nextEvent(bob, 'message')
  const echo = recordEvents(alice, 'message')
  const sent = await alice.timeout(WAIT_MS).emitWithAck('message', { room: 'lobby', data: { text: 'hi' } })
  t.same(Object.keys(sent).sort(), ['id', 'ok'])
  const message = await received
  const { ts, ...rest } = message
  t.same(rest, { id: sent.id, room: 'lobby', from: { sub: 'alice' }, data: { text: 'hi' } })
  t.ok(Number.isInteger(ts) && Math.abs(Date.now() - ts) < 5000, 'ts is the send time in ms')
  await eventsWithin(alice, 100)
  t.same(echo.stop(), [], 'not to the sender')

  const quiet = eventsWithin(bob, 200)
  const refused = await alice.timeout(WAIT_MS).emitWithAck('message', { room: 'elsewhere', data: 1 })
  t.same([refused.ok, refused.error?.code], [false, 'FORBIDDEN'])
  t.same(await quiet, [])

  const gone = Promise.all([disconnection(alice), disconnection(bob)])
  t.equal((await revokeKey(app, id)).disconnected, 2)
  await gone
})
