import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { adminHeaders, buildApp, createKey, listen, mintToken } from '../helper.js'
import { ack, connectAs, keyWithPolicy, nextEvent, recordEvents, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'
import { createRoute, socketIoBackend } from '../support/backends.js'

// Two applications on one gateway that pick the same room names and subject names (SPEC §14).
const RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'user:${sub}'] },
  { effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'], rooms: ['user:${sub}'] },
  { effect: 'allow', namespace: '/notification', actions: ['publish'], rooms: ['user:*'] },
  { effect: 'allow', namespace: '/error', actions: ['connect'] }
]

type Tap = { teardown: (fn: () => unknown) => void }

interface Tenant { id: string, apiKey: string, url: string, as: (namespace: string, sub: string) => Promise<ClientSocket> }

async function tenantOn (t: Tap, app: FastifyInstance, url: string, tenant: string | undefined): Promise<Tenant> {
  const key = await keyWithPolicy(app, RULES, { scopes: ['token:delegate', 'publish'], ...(tenant === undefined ? {} : { tenant }) })
  return { ...key, url, as: async (namespace, sub) => await connectAs(t, url, namespace, await tokenFor(app, key.apiKey, sub)) }
}

/**
 * Resolves once `socket` got the `sentinel` message, with every `event` it got
 * before: a message that crossed tenants would be among them (one instance
 * writes to a socket in the order it delivered).
 */
async function receivedBefore (socket: ClientSocket, event: string, sentinel: () => Promise<unknown>): Promise<unknown[]> {
  const seen = recordEvents<{ data: unknown }>(socket, event)
  const arrived = new Promise<void>((resolve) => {
    const listener = (message: { data: unknown }): void => {
      if ((message.data as { sentinel?: boolean } | null)?.sentinel === true) {
        socket.off(event, listener)
        resolve()
      }
    }
    socket.on(event, listener)
  })
  await sentinel()
  await arrived
  return seen.stop().filter((message) => (message.data as { sentinel?: boolean } | null)?.sentinel !== true)
}

for (const embedded of [false, true]) {
  t.test(`keys have a tenant, fixed at creation and filtered in lists${embedded ? ' (embedded PGlite)' : ''}`, async (t) => {
    const app = await buildApp(t, {}, { embedded })
    const plain = await app.inject({ method: 'POST', url: '/v1/keys', headers: adminHeaders, payload: { name: 'plain' } })
    t.equal(plain.json().tenant, 'default', 'a key made without one is the default tenant\'s')
    const ofA = await app.inject({ method: 'POST', url: '/v1/keys', headers: adminHeaders, payload: { name: 'a', tenant: 'app-a' } })
    t.equal(ofA.statusCode, 201)
    t.equal(ofA.json().tenant, 'app-a')
    for (const tenant of ['App', 'a_b', '', 'x'.repeat(65), 'a\u001fb']) {
      const bad = await app.inject({ method: 'POST', url: '/v1/keys', headers: adminHeaders, payload: { name: 'bad', tenant } })
      t.equal(bad.json().code, 'VALIDATION_FAILED', `tenant ${JSON.stringify(tenant)} is refused`)
    }
    const patched = await app.inject({ method: 'PATCH', url: `/v1/keys/${ofA.json().id as string}`, headers: adminHeaders, payload: { tenant: 'app-b' } })
    t.equal(patched.json().code, 'VALIDATION_FAILED', 'a key\'s tenant never changes')
    t.equal((await app.inject({ url: `/v1/keys/${ofA.json().id as string}`, headers: adminHeaders })).json().tenant, 'app-a')

    await createKey(app, { name: 'a2', tenant: 'app-a' })
    const listed = await app.inject({ url: '/v1/keys?tenant=app-a&limit=1', headers: adminHeaders })
    t.equal(listed.statusCode, 200)
    t.same(listed.json().items.map((k: { name: string, tenant: string }) => [k.name, k.tenant]), [['a2', 'app-a']])
    const next = await app.inject({ url: `/v1/keys?tenant=app-a&limit=1&cursor=${listed.json().nextCursor as string}`, headers: adminHeaders })
    t.same(next.json().items.map((k: { name: string }) => k.name), ['a'], 'the second page stays within the tenant')
    t.equal(next.json().nextCursor, null)
    const all = await app.inject({ url: '/v1/keys', headers: adminHeaders })
    t.ok(all.json().items.some((k: { tenant: string }) => k.tenant === 'default'), 'without a filter every tenant is listed')
    t.equal((await app.inject({ url: '/v1/keys?tenant=NOPE', headers: adminHeaders })).json().code, 'VALIDATION_FAILED')

    const token = await mintToken(app, ofA.json().apiKey)
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { tnt: string }
    t.equal(claims.tnt, 'app-a', 'tokens carry the tenant')
  })
}

t.test('two tenants with the same rooms and subjects never see each other', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const url = await listen(app)
  const a = await tenantOn(t, app, url, 'app-a')
  const b = await tenantOn(t, app, url, 'app-b')

  const bobOfA = await a.as('/chat', 'bob')
  const bobOfB = await b.as('/chat', 'bob')
  const aliceOfA = await a.as('/chat', 'alice')
  const carolOfB = await b.as('/chat', 'carol')
  for (const socket of [bobOfA, bobOfB, aliceOfA, carolOfB]) t.same(await ack(socket, 'join', { room: 'lobby' }), { ok: true })

  await t.test('a relay reaches its own tenant\'s lobby only', async (t) => {
    const got = nextEvent(bobOfA, 'message')
    const crossed = await receivedBefore(bobOfB, 'message', async () => {
      t.equal((await ack(aliceOfA, 'message', { room: 'lobby', data: 'for A' })).ok, true)
      t.same((await got).data, 'for A', 'A\'s bob got it')
      t.same((await got).from, { sub: 'alice' })
      await ack(carolOfB, 'message', { room: 'lobby', data: { sentinel: true } })
    })
    t.same(crossed, [], 'B\'s bob saw nothing of A\'s lobby')
  })

  await t.test('an HTTP publish reaches the publishing key\'s tenant; the root admin names one', async (t) => {
    const noteA = await a.as('/notification', 'bob')
    const noteB = await b.as('/notification', 'bob')
    const publish = async (headers: Record<string, string>, body: Record<string, unknown>): Promise<{ statusCode: number, json: () => any }> => // eslint-disable-line @typescript-eslint/no-explicit-any -- the reply as sent
      await app.inject({ method: 'POST', url: '/v1/publish', headers, payload: { namespace: '/notification', room: 'user:bob', event: 'notice', ...body } })

    const crossed = await receivedBefore(noteA, 'notice', async () => {
      const got = nextEvent(noteB, 'notice')
      t.equal((await publish({ 'x-api-key': b.apiKey }, { data: 'B private' })).statusCode, 202)
      t.same((await got).data, 'B private')
      t.equal((await publish(adminHeaders, { tenant: 'app-a', data: { sentinel: true } })).statusCode, 202)
    })
    t.same(crossed, [], 'A\'s bob never got B\'s private notice')

    const forged = await publish({ 'x-api-key': b.apiKey }, { tenant: 'app-a', data: 'forged' })
    t.equal(forged.statusCode, 403)
    t.equal(forged.json().code, 'FORBIDDEN', 'a key cannot publish into another tenant')
    t.equal((await publish({ 'x-api-key': b.apiKey }, { tenant: 'app-b', data: { sentinel: true } })).statusCode, 202, 'naming its own tenant is fine')
    t.equal((await publish(adminHeaders, { tenant: 'Bad!', data: 1 })).json().code, 'VALIDATION_FAILED')
  })

  await t.test('refusals are mirrored to /error within the tenant', async (t) => {
    const errorsOfA = await a.as('/error', 'bob')
    const errorsOfB = await b.as('/error', 'bob')
    const seenByB = recordEvents(errorsOfB, 'gateway:error')
    const mirrored = nextEvent(errorsOfA, 'gateway:error')
    t.equal((await ack(bobOfA, 'message', { room: 'elsewhere', data: 1 })).error.code, 'FORBIDDEN')
    t.match(await mirrored, { code: 'FORBIDDEN', namespace: '/chat' }, 'A\'s bob hears his own refusal')
    // B's bob's own refusal comes after A's on this instance: had A's crossed, B's /error would have heard it first.
    const own = nextEvent(errorsOfB, 'gateway:error')
    t.equal((await ack(bobOfB, 'message', { room: 'elsewhere', data: 2 })).error.code, 'FORBIDDEN')
    await own
    t.equal(seenByB.stop().length, 1, 'B\'s bob heard his own refusal only')
  })

  await t.test('presence and history stay within the tenant', async (t) => {
    const presenceOfA = await ack(bobOfA, 'presence', { room: 'lobby' })
    t.same(presenceOfA.members.map((m: { sub: string }) => m.sub).sort(), ['alice', 'bob'], 'A\'s lobby: A\'s bob and alice')
    const presenceOfB = await ack(bobOfB, 'presence', { room: 'lobby' })
    t.same(presenceOfB.members.map((m: { sub: string }) => m.sub).sort(), ['bob', 'carol'], 'B\'s lobby: B\'s bob and carol')
    const historyOfB = await ack(bobOfB, 'history', { room: 'lobby' })
    t.ok(historyOfB.messages.length > 0)
    t.notOk(historyOfB.messages.some((m: { data: unknown }) => m.data === 'for A'), 'A\'s message is not in B\'s history')
    t.ok((await ack(bobOfA, 'history', { room: 'lobby' })).messages.some((m: { data: unknown }) => m.data === 'for A'), 'it is in A\'s')
    const admin = await app.inject({ url: '/v1/presence?namespace=/chat&room=lobby&tenant=app-b', headers: adminHeaders })
    t.same(admin.json().members.map((m: { sub: string }) => m.sub).sort(), ['bob', 'carol'], 'an admin names the tenant')
    // A since from A's room does not replay A's messages into B's.
    const id = (await ack(aliceOfA, 'message', { room: 'lobby', data: 'A again' })).id
    const rejoin = await b.as('/chat', 'bob')
    const replayed = recordEvents<{ data: unknown }>(rejoin, 'message')
    t.match(await ack(rejoin, 'join', { room: 'lobby', since: id }), { ok: true })
    t.notOk(replayed.stop().some((m) => m.data === 'A again' || m.data === 'for A'))
  })

  await t.test('a key\'s own room is out of every client\'s reach, whatever its policy', async (t) => {
    const open = await keyWithPolicy(app, [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'] }], { scopes: ['token:delegate', 'publish'] })
    const mallory = await connectAs(t, url, '/chat', await tokenFor(app, open.apiKey, 'mallory'))
    const crossed = await receivedBefore(bobOfB, 'message', async () => {
      for (const room of [`key:${b.id}`, `key:${a.id}`]) t.equal((await ack(mallory, 'message', { room, data: 'into a key room' })).ok, true, `${room} is just a room of mallory's tenant`)
      const http = await app.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': open.apiKey }, payload: { namespace: '/chat', room: `key:${b.id}`, event: 'message', data: 'into a key room' } })
      t.equal(http.statusCode, 202)
      await ack(carolOfB, 'message', { room: 'lobby', data: { sentinel: true } })
    })
    t.same(crossed, [], 'B\'s sockets got nothing')
  })

  await t.test('keys of one tenant share its users and rooms', async (t) => {
    const a2 = await tenantOn(t, app, url, 'app-a')
    const daveOfA = await a2.as('/chat', 'dave')
    const got = nextEvent(bobOfA, 'message')
    t.equal((await ack(daveOfA, 'message', { room: 'lobby', data: 'same tenant, other key' })).ok, true)
    t.same((await got).from, { sub: 'dave' })
  })

  await t.test('no room name of one tenant spells a room of another', async (t) => {
    const plain = await tenantOn(t, app, url, undefined)
    const eve = await plain.as('/chat', 'eve')
    for (const room of ['app-a\u001flobby', 'lobby\u0000', '\u001f']) {
      t.equal((await ack(eve, 'join', { room })).error.code, 'VALIDATION_FAILED', `join ${JSON.stringify(room)}`)
      t.equal((await ack(eve, 'message', { room, data: 1 })).error.code, 'VALIDATION_FAILED', `publish to ${JSON.stringify(room)}`)
    }
    const http = await app.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': plain.apiKey }, payload: { namespace: '/chat', room: 'app-a\u001flobby', event: 'message', data: 1 } })
    t.equal(http.json().code, 'VALIDATION_FAILED')
    // The default tenant's lobby is a third room: eve's message reaches neither A nor B.
    t.same(await ack(eve, 'join', { room: 'lobby' }), { ok: true })
    const crossedA = await receivedBefore(bobOfA, 'message', async () => {
      t.equal((await ack(eve, 'message', { room: 'lobby', data: 'default tenant' })).ok, true)
      await ack(aliceOfA, 'message', { room: 'lobby', data: { sentinel: true } })
    })
    t.same(crossedA, [])
  })
})

t.test('a route hears the caller\'s tenant, and its backend publishes into the tenant it names', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const backend = await socketIoBackend(t, () => ({ data: 'taken' }))
  const route = await createRoute(app, { events: ['order'], upstream: { type: 'socketio', url: backend.url, namespace: '/spark' }, relay: false })
  const url = await listen(app)
  const a = await tenantOn(t, app, url, 'app-a')
  const b = await tenantOn(t, app, url, 'app-b')
  const bobOfA = await a.as('/chat', 'bob')
  const bobOfB = await b.as('/chat', 'bob')
  for (const socket of [bobOfA, bobOfB]) t.same(await ack(socket, 'join', { room: 'lobby' }), { ok: true })

  t.match(await ack(bobOfB, 'order', { room: 'lobby', data: 1 }), { ok: true, data: 'taken' }, 'the backend answered')
  const event = backend.events[0] as { principal: { sub: string, tenant: string } }
  t.same([event.principal.sub, event.principal.tenant], ['bob', 'app-b'], 'the backend knows whose bob it is')

  const gateway = backend.gateways()[0]
  const crossed = await receivedBefore(bobOfA, 'shipped', async () => {
    const got = nextEvent(bobOfB, 'shipped')
    t.match(await gateway.timeout(10_000).emitWithAck('spark:publish', { namespace: '/chat', room: 'lobby', event: 'shipped', data: 'to B', tenant: 'app-b' }), { ok: true })
    t.same((await got).from, { sub: `route:${route.name as string}`, route: route.name })
    await gateway.timeout(10_000).emitWithAck('spark:publish', { namespace: '/chat', room: 'lobby', event: 'shipped', data: { sentinel: true }, tenant: 'app-a' })
  })
  t.same(crossed, [], 'a publish named for B stayed in B')
  t.match(await gateway.timeout(10_000).emitWithAck('spark:publish', { namespace: '/chat', room: 'lobby', event: 'shipped', data: 1, tenant: 'NO' }), { ok: false, error: { code: 'VALIDATION_FAILED' } })
})
