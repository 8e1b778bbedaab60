import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { buildApp, connect, connected, listen } from '../helper.js'
import { collectAlerts } from '../support/auth.js'
import { connectAs, disconnection, eventually, eventsWithin, handshakeOutcome, keyWithPolicy, nextEvent, recordEvents, ROOMY_LIMITS, tokenFor, ack, WAIT_MS } from '../support/sockets.js'

/** The senders' policy: the example of SPEC §3, plus the /error namespace. */
const SENDER_RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['message', 'typing'], rooms: ['lobby', 'room:*', 'user:${sub}'] },
  { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly*'] },
  { effect: 'allow', namespace: '/error', actions: ['connect'] }
]
/** A watcher may join any room of /chat (and others' user rooms), to see what a refused packet would have reached. */
const WATCHER_RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe'], rooms: ['*'] }]

interface Room {
  app: FastifyInstance
  url: string
  apiKey: string
  keyId: string
  alice: ClientSocket
  bob: ClientSocket
  watcher: ClientSocket
}

/**
 * alice and bob (one key, the sender policy) and a watcher, all in `lobby` of
 * /chat. With `aliceJoins: false` alice has sent no packet yet (she may
 * publish to lobby without joining it), so her packet window is untouched.
 */
async function chatRoom (t: Tap, env: Record<string, string> = {}, key: Record<string, unknown> = {}, aliceJoins = true): Promise<Room> {
  // No presence events: what the watcher receives is only what was relayed (presence has tests of its own).
  const app = await buildApp(t, { ...ROOMY_LIMITS, PRESENCE_NAMESPACES: 'none', ...env })
  const sender = await keyWithPolicy(app, SENDER_RULES, key)
  const watch = await keyWithPolicy(app, WATCHER_RULES)
  const url = await listen(app)
  const [alice, bob, watcher] = await Promise.all([
    connectAs(t, url, '/chat', await tokenFor(app, sender.apiKey, 'alice')),
    connectAs(t, url, '/chat', await tokenFor(app, sender.apiKey, 'bob')),
    connectAs(t, url, '/chat', await tokenFor(app, watch.apiKey, 'watcher'))
  ])
  for (const socket of aliceJoins ? [alice, bob, watcher] : [bob, watcher]) await ack(socket, 'join', { room: 'lobby' })
  return { app, url, apiKey: sender.apiKey, keyId: sender.id, alice, bob, watcher }
}

type Tap = Parameters<typeof buildApp>[0]

/** Emits with an ack and waits for it (2 s at most). */
/** A refusal ack in one comparable shape. */
function refusal (response: { ok?: unknown, error?: { code?: unknown, message?: unknown } }): { ok: unknown, code: unknown, message: string } {
  return { ok: response.ok, code: response.error?.code, message: typeof response.error?.message }
}
const refused = (code: string): ReturnType<typeof refusal> => ({ ok: false, code, message: 'string' })

t.test('join and leave answer through their ack', async (t) => {
  const { alice, bob } = await chatRoom(t)
  t.same(await ack(alice, 'join', { room: 'room:1' }), { ok: true })
  t.same(await ack(alice, 'leave', { room: 'room:1' }), { ok: true })
  t.same(await ack(alice, 'leave', { room: 'room:never-joined' }), { ok: true }, 'leaving a room one is not in is fine')
  t.same(refusal(await ack(alice, 'join', { room: 'secret' })), refused('FORBIDDEN'), 'a room the policy does not allow')
  t.same(refusal(await ack(alice, 'join', { room: 'user:bob' })), refused('FORBIDDEN'), 'another user\'s room')
  t.same(refusal(await ack(alice, 'join', { room: 'key:whatever' })), refused('FORBIDDEN'), 'an internal room')
  t.same(refusal(await ack(alice, 'leave', { room: 'user:alice' })), refused('FORBIDDEN'), 'one\'s own user room is kept')
  t.same(refusal(await ack(alice, 'join', { room: 42 })), refused('VALIDATION_FAILED'), 'a room that is not a string')
  t.same(refusal(await ack(alice, 'join', { room: 'lobby', extra: true })), refused('VALIDATION_FAILED'), 'an extra property')
  t.same(refusal(await ack(alice, 'join', 'lobby')), refused('VALIDATION_FAILED'), 'a bare string')
  t.same(refusal(await ack(alice, 'join')), refused('VALIDATION_FAILED'), 'no payload')

  // A room left is no longer delivered to; a refused join did not put the socket in the room.
  t.same(await ack(bob, 'join', { room: 'room:2' }), { ok: true })
  t.same(await ack(bob, 'leave', { room: 'room:2' }), { ok: true })
  const quiet = eventsWithin(bob)
  t.equal((await ack(alice, 'message', { room: 'room:2', data: 'anyone?' })).ok, true)
  t.same(await quiet, [], 'bob left room:2 and receives nothing there')
})

t.test('a message reaches the room\'s other members, not its sender', async (t) => {
  const { app, url, apiKey, alice, bob, watcher } = await chatRoom(t)
  const toBob = nextEvent(bob, 'message')
  const toWatcher = nextEvent(watcher, 'message')
  const echo = recordEvents(alice, 'message')
  const before = Date.now()
  const response = await ack(alice, 'message', { room: 'lobby', data: { text: 'hi', n: [1, 2, null] } })
  t.same(Object.keys(response).sort(), ['id', 'ok'])
  t.equal(response.ok, true)
  t.type(response.id, 'string')
  const message = await toBob
  t.same(Object.keys(message).sort(), ['data', 'from', 'id', 'room', 'ts'], 'exactly { id, room, from, data, ts }')
  t.equal(message.id, response.id, 'the ack carries the id members receive')
  t.equal(message.room, 'lobby')
  t.same(message.from, { sub: 'alice' })
  t.same(message.data, { text: 'hi', n: [1, 2, null] })
  t.ok(message.ts >= before - 1000 && message.ts <= Date.now() + 1000, 'ts is a current epoch time in ms')
  t.same(await toWatcher, message, 'every member receives the same message')
  await eventsWithin(alice, 100)
  t.same(echo.stop(), [], 'the sender does not receive its own message')

  // Any JSON value is data, delivered as sent.
  for (const data of [null, 0, 'text', [1, 'two'], false]) {
    const received = nextEvent(bob, 'typing')
    t.equal((await ack(alice, 'typing', { room: 'lobby', data })).ok, true)
    t.same((await received).data, data, `data ${JSON.stringify(data)}`)
  }

  // A socket may publish to a room its policy allows without having joined it.
  t.same(await ack(bob, 'join', { room: 'room:7' }), { ok: true })
  const inRoom7 = nextEvent(bob, 'message')
  const lobby = recordEvents(watcher, 'message')
  t.equal((await ack(alice, 'message', { room: 'room:7', data: 'hello 7' })).ok, true)
  t.equal((await inRoom7).room, 'room:7')
  await eventsWithin(watcher, 100)
  t.same(lobby.stop(), [], 'members of other rooms receive nothing')

  // The user room: alice writes to her own (her other sockets receive it), never to bob's.
  const aliceAgain = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
  const own = nextEvent(aliceAgain, 'message')
  t.equal((await ack(alice, 'message', { room: 'user:alice', data: 'note to self' })).ok, true)
  t.same((await own).from, { sub: 'alice' })
})

t.test('a refused packet is refused through its ack and delivered to no one', async (t) => {
  const { alice, bob, watcher } = await chatRoom(t)
  t.same(await ack(watcher, 'join', { room: 'room:readonly-news' }), { ok: true })
  t.same(await ack(watcher, 'join', { room: 'secret' }), { ok: true })
  // user:bob is bob's own (he is in it; nobody else may join it), so bob himself watches it.
  t.same(await ack(bob, 'join', { room: 'room:readonly-news' }), { ok: true })
  const cases: Array<[string, string, unknown[], string]> = [
    ['an event the policy does not list', 'shout', [{ room: 'lobby', data: 'HEY' }], 'FORBIDDEN'],
    ['a room the policy does not allow', 'message', [{ room: 'secret', data: 'psst' }], 'FORBIDDEN'],
    ['a room a deny rule covers', 'message', [{ room: 'room:readonly-news', data: 'edit' }], 'FORBIDDEN'],
    ['another user\'s room', 'message', [{ room: 'user:bob', data: 'hi bob' }], 'FORBIDDEN'],
    ['a reserved event', 'gateway:error', [{ room: 'lobby', data: { code: 'FAKE' } }], 'FORBIDDEN'],
    ['a server event', 'auth:expired', [{ room: 'lobby', data: {} }], 'FORBIDDEN'],
    ['no room', 'message', [{ data: 'x' }], 'VALIDATION_FAILED'],
    ['no data', 'message', [{ room: 'lobby' }], 'VALIDATION_FAILED'],
    ['an extra property', 'message', [{ room: 'lobby', data: 'x', to: 'bob' }], 'VALIDATION_FAILED'],
    ['a room that is a number', 'message', [{ room: 42, data: 'x' }], 'VALIDATION_FAILED'],
    ['a room that is an array', 'message', [{ room: ['lobby'], data: 'x' }], 'VALIDATION_FAILED'],
    ['an empty room', 'message', [{ room: '', data: 'x' }], 'VALIDATION_FAILED'],
    ['a bare string', 'message', ['lobby'], 'VALIDATION_FAILED'],
    ['no payload', 'message', [], 'VALIDATION_FAILED'],
    ['two payloads', 'message', [{ room: 'lobby', data: 'x' }, { room: 'lobby', data: 'y' }], 'VALIDATION_FAILED']
  ]
  // Everything bob and the watcher receive while (and 200 ms after) alice sends the refused packets.
  const quiet = Promise.all([eventsWithin(bob, 400), eventsWithin(watcher, 400)])
  for (const [what, event, args, code] of cases) t.same(refusal(await ack(alice, event, ...args)), refused(code), what)
  t.same(await quiet, [[], []], 'nothing delivered')
  t.ok(alice.connected, 'refusals do not disconnect')
  t.equal((await ack(alice, 'message', { room: 'lobby', data: 'still here' })).ok, true)
})

t.test('a refused packet without an ack gets gateway:error { code, message, event }', async (t) => {
  const { alice, bob, watcher } = await chatRoom(t)
  const quiet = Promise.all([eventsWithin(bob, 300), eventsWithin(watcher, 300)])
  const error = nextEvent(alice, 'gateway:error')
  alice.emit('shout', { room: 'lobby', data: 'HEY' })
  const body = await error
  t.same({ ...body, message: typeof body.message }, { code: 'FORBIDDEN', message: 'string', event: 'shout' })
  const invalid = nextEvent(alice, 'gateway:error')
  alice.emit('message', { room: 7, data: 'x' })
  t.same({ ...(await invalid), message: 'm' }, { code: 'VALIDATION_FAILED', message: 'm', event: 'message' })
  t.same(await quiet, [[], []], 'nothing delivered')
  // An accepted packet without an ack is relayed, with no error.
  const errors = recordEvents(alice, 'gateway:error')
  const received = nextEvent(bob, 'message')
  alice.emit('message', { room: 'lobby', data: 'fire and forget' })
  t.equal((await received).data, 'fire and forget')
  t.same(errors.stop(), [])
})

t.test('the /error namespace of the same subject hears about a refused packet', async (t) => {
  const { app, url, apiKey, alice, bob } = await chatRoom(t)
  const aliceErrors = await connectAs(t, url, '/error', await tokenFor(app, apiKey, 'alice'))
  const bobErrors = await connectAs(t, url, '/error', await tokenFor(app, apiKey, 'bob'))
  const notice = nextEvent(aliceErrors, 'gateway:error')
  const othersQuiet = eventsWithin(bobErrors, 300)
  t.same(refusal(await ack(alice, 'message', { room: 'secret', data: 'x' })), refused('FORBIDDEN'))
  const body = await notice
  t.equal(body.code, 'FORBIDDEN')
  t.equal(body.event, 'message')
  t.type(body.message, 'string')
  t.same(await othersQuiet, [], 'another subject\'s /error socket hears nothing')
  const second = nextEvent(aliceErrors, 'gateway:error')
  alice.emit('message', { room: 'lobby' })
  t.equal((await second).code, 'VALIDATION_FAILED', 'refusals without an ack are mirrored too')
  t.ok(bob.connected)
})

t.test('/error hears of a rate limit once per window, and of a flood disconnect', async (t) => {
  const { app, url, apiKey, alice } = await chatRoom(t, { RATE_LIMIT_SOCKET: '5/second' }, {}, false)
  const aliceErrors = await connectAs(t, url, '/error', await tokenFor(app, apiKey, 'alice'))
  const notices = recordEvents(aliceErrors, 'gateway:error')
  const gone = disconnection(alice, 1500)
  for (let i = 0; i < 30 && alice.connected; i++) alice.emit('message', { room: 'lobby', data: i })
  await gone
  // Until both notices arrived (polled: later on a loaded machine), then a while longer for a third to show.
  await eventually(() => notices.received.length >= 2, WAIT_MS, 'two notices on /error').catch(() => {})
  await eventsWithin(aliceErrors, 200)
  t.same(notices.stop().map((n) => [n.code, n.event, n.namespace]), [
    ['RATE_LIMITED', 'message', '/chat'],
    ['RATE_LIMITED', 'flood', '/chat']
  ], 'one rate-limit notice, then the forced disconnect')
  t.ok(aliceErrors.connected, 'the /error socket itself stays')
})

t.test('a packet over SOCKET_MAX_PAYLOAD is PAYLOAD_TOO_LARGE and the socket stays connected', async (t) => {
  const { alice, bob, watcher } = await chatRoom(t, { SOCKET_MAX_PAYLOAD: '1024' })
  const quiet = Promise.all([eventsWithin(bob), eventsWithin(watcher)])
  t.same(refusal(await ack(alice, 'message', { room: 'lobby', data: 'x'.repeat(2000) })), refused('PAYLOAD_TOO_LARGE'))
  // Multi-byte characters count as bytes, not characters: 500 × 3 bytes is over 1024.
  t.same(refusal(await ack(alice, 'message', { room: 'lobby', data: '€'.repeat(500) })), refused('PAYLOAD_TOO_LARGE'), 'counted in UTF-8 bytes')
  t.same(await quiet, [[], []], 'nothing delivered')
  t.ok(alice.connected, 'still connected')
  const received = nextEvent(bob, 'message')
  t.equal((await ack(alice, 'message', { room: 'lobby', data: 'x'.repeat(900) })).ok, true, 'a packet under the limit passes')
  t.equal((await received).data.length, 900)
})

t.test('a packet over SOCKET_MAX_PAYLOAD on the polling transport is refused too', async (t) => {
  const { app, url, apiKey, bob } = await chatRoom(t, { SOCKET_MAX_PAYLOAD: '1024' })
  const carol = connect(t, `${url}/chat`, { transports: ['polling'], auth: { token: await tokenFor(app, apiKey, 'carol') } })
  await connected(carol)
  const quiet = eventsWithin(bob)
  t.same(refusal(await ack(carol, 'message', { room: 'lobby', data: 'x'.repeat(2000) })), refused('PAYLOAD_TOO_LARGE'))
  t.same(await quiet, [])
  t.ok(carol.connected)
  t.equal((await ack(carol, 'message', { room: 'lobby', data: 'small' })).ok, true)
})

t.test('the per-socket rate limit refuses the packet past RATE_LIMIT_SOCKET', async (t) => {
  const { alice, bob } = await chatRoom(t, { RATE_LIMIT_SOCKET: '5/second' }, {}, false)
  const received = recordEvents(bob, 'message')
  const acks = await Promise.all(Array.from({ length: 6 }, async (_, i) => await ack(alice, 'message', { room: 'lobby', data: i })))
  t.same(acks.slice(0, 5).map((a) => a.ok), [true, true, true, true, true])
  t.same(refusal(acks[5]), refused('RATE_LIMITED'))
  t.type(acks[5].error.retryAfter, 'number', 'with retryAfter')
  await eventsWithin(bob, 200)
  t.same(received.stop().map((m) => m.data), [0, 1, 2, 3, 4], 'the refused packet was not delivered')
  t.ok(alice.connected, 'one packet over the limit is not a flood')
  t.ok(bob.connected, 'the limit is per socket: bob is untouched')
  t.equal((await ack(bob, 'message', { room: 'lobby', data: 'bob' })).ok, true)
})

t.test('per-packet checks run in SPEC order: a packet the policy refuses is FORBIDDEN even past the socket limit', async (t) => {
  const { alice } = await chatRoom(t, { RATE_LIMIT_SOCKET: '5/second' }, {}, false)
  const codes = []
  for (let i = 0; i < 6; i++) codes.push((await ack(alice, 'message', { room: 'secret', data: i })).error?.code)
  t.same(codes, ['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN'])
  t.same(refusal(await ack(alice, 'message', { room: 'lobby', data: 'valid' })), refused('RATE_LIMITED'), 'refused packets count toward the limit')
})

t.test('a socket that keeps sending past its limit gets gateway:error RATE_LIMITED and is disconnected', async (t) => {
  const { app, url, apiKey, alice, bob } = await chatRoom(t, { RATE_LIMIT_SOCKET: '5/second', ANOMALY_MAX_FAILURES: '1/minute' }, {}, false)
  const alerts = collectAlerts(app)
  const errors = recordEvents(alice, 'gateway:error')
  const received = recordEvents(bob, 'message')
  const gone = disconnection(alice, 1500)
  for (let i = 0; i < 30 && alice.connected; i++) alice.emit('message', { room: 'lobby', data: i })
  t.ok((await gone).includes('server'), 'disconnected by the server')
  const codes = errors.stop().map((e) => e.code)
  t.ok(codes.length > 0 && codes.every((c) => c === 'RATE_LIMITED'), `gateway:error RATE_LIMITED before the disconnect (${codes.join(',')})`)
  await eventually(() => received.received.length >= 5, WAIT_MS, 'the five packets within the limit').catch(() => {})
  await eventsWithin(bob, 100)
  t.same(received.stop().map((m) => m.data), [0, 1, 2, 3, 4], 'only the packets within the limit were delivered')
  t.ok(bob.connected, 'the others keep their connection')
  t.equal((await ack(bob, 'message', { room: 'lobby', data: 'still fine' })).ok, true)

  // Each flood counts toward the anomaly block of its address: a second one blocks it.
  const later = await tokenFor(app, apiKey, 'alice')
  const again = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
  const goneAgain = disconnection(again, 1500)
  for (let i = 0; i < 30 && again.connected; i++) again.emit('message', { room: 'lobby', data: i })
  await goneAgain
  await eventually(() => alerts.length > 0, WAIT_MS, 'an alert')
  t.same(alerts.map((a) => [a.kind, a.ip]), [['ip_blocked', '127.0.0.1']], 'the address is blocked after the second flood')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token: later } }), 'TEMPORARILY_BLOCKED')
})

t.test('the key\'s rate limit counts socket and HTTP publishes together', async (t) => {
  const { app, alice, bob, watcher, apiKey } = await chatRoom(t, {}, { scopes: ['publish', 'token:delegate'], rateLimit: { max: 3, windowSeconds: 60 } })
  const received = recordEvents(watcher, 'message')
  t.equal((await ack(alice, 'message', { room: 'lobby', data: 1 })).ok, true)
  t.equal((await ack(bob, 'message', { room: 'lobby', data: 2 })).ok, true, 'another socket of the same key counts in the same limit')
  const third = nextEvent(watcher, 'message')
  const http = await app.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': apiKey }, payload: { namespace: '/chat', room: 'lobby', event: 'message', data: 3 } })
  t.equal(http.statusCode, 202, http.body)
  t.equal((await third).data, 3)
  const quiet = eventsWithin(watcher)
  t.same(refusal(await ack(alice, 'message', { room: 'lobby', data: 4 })), refused('RATE_LIMITED'), 'the 4th publish is refused')
  const errors = nextEvent(alice, 'gateway:error')
  alice.emit('message', { room: 'lobby', data: 5 })
  t.equal((await errors).code, 'RATE_LIMITED', 'without an ack: gateway:error')
  const httpAgain = await app.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': apiKey }, payload: { namespace: '/chat', room: 'lobby', event: 'message', data: 6 } })
  t.equal(httpAgain.statusCode, 429)
  t.equal(httpAgain.json().code, 'RATE_LIMITED')
  t.ok(Number(httpAgain.headers['retry-after']) >= 1)
  t.same(await quiet, [])
  t.same(received.stop().map((m) => m.data), [1, 2, 3], 'exactly the three publishes within the limit were delivered')
  t.same(await ack(alice, 'join', { room: 'room:1' }), { ok: true }, 'joining is not a publish')
})
