import t from 'tap'
import type { Socket as ClientSocket } from 'socket.io-client'
import { adminHeaders, buildApp, listen, realServers, sleep } from '../helper.js'
import { ack, connectAs, eventually, keyWithPolicy, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'

// SPEC §11 on one instance, on both stores (Redis with the real servers, in process embedded).
const RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'room:*'] },
  { effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'], rooms: ['lobby'] }
]

interface PresenceEvent { room: string, sub: string, ts: number }

function presenceEvents (socket: ClientSocket): string[] {
  const events: string[] = []
  socket.on('presence:join', (e: PresenceEvent) => { events.push(`join ${e.sub} ${e.room}`) })
  socket.on('presence:leave', (e: PresenceEvent) => { events.push(`leave ${e.sub} ${e.room}`) })
  return events
}

for (const embedded of realServers ? [false, true] : [true]) {
  t.test(`presence counts subjects, joins and leaves once each, never flaps within the grace (${embedded ? 'in process' : 'Redis'})`, async (t) => {
    const app = await buildApp(t, { ...ROOMY_LIMITS, PRESENCE_GRACE_SECONDS: '1' }, { embedded })
    const url = await listen(app)
    const { apiKey } = await keyWithPolicy(app, RULES)
    const as = async (sub: string, namespace = '/chat'): Promise<ClientSocket> => await connectAs(t, url, namespace, await tokenFor(app, apiKey, sub))

    const carol = await as('carol')
    const seen = presenceEvents(carol)
    t.same(await ack(carol, 'join', { room: 'lobby' }), { ok: true })
    await eventually(() => seen.includes('join carol lobby'), 10_000, 'carol\'s own join')
    const tabs = [await as('alice'), await as('alice')]
    for (const tab of tabs) t.same(await ack(tab, 'join', { room: 'lobby' }), { ok: true })
    const bob = await as('bob')
    t.same(await ack(bob, 'join', { room: 'lobby' }), { ok: true })
    await eventually(() => seen.includes('join bob lobby'), 10_000, 'bob\'s join')

    const snapshot = await ack(carol, 'presence', { room: 'lobby' })
    t.equal(snapshot.ok, true)
    t.equal(snapshot.count, 3, 'three subjects: two tabs of alice count once')
    t.equal(snapshot.truncated, false)
    t.same(Object.fromEntries(snapshot.members.map((m: { sub: string, connections: number }) => [m.sub, m.connections])), { carol: 1, alice: 2, bob: 1 })
    const http = await app.inject({ url: '/v1/presence?namespace=/chat&room=lobby', headers: adminHeaders })
    t.equal(http.statusCode, 200)
    t.equal(http.json().count, 3, 'GET /v1/presence says the same')
    t.equal((await app.inject({ url: '/v1/presence?namespace=/chat&room=lobby', headers: { 'x-api-key': apiKey } })).statusCode, 403, 'an admin endpoint')
    t.equal((await app.inject({ url: '/v1/presence?namespace=/notification&room=lobby', headers: adminHeaders })).json().code, 'VALIDATION_FAILED', '/notification keeps no presence by default')

    // One tab closes: alice is still there. Bob reconnects within the grace: no leave, no second join.
    tabs[0].close()
    bob.close()
    const bobAgain = await as('bob')
    t.same(await ack(bobAgain, 'join', { room: 'lobby' }), { ok: true })
    await sleep(1500)
    t.same(seen, ['join carol lobby', 'join alice lobby', 'join bob lobby'], 'no flap: a closed tab and a reconnect inside the grace')
    t.equal((await ack(carol, 'presence', { room: 'lobby' })).count, 3)

    // Alice's last tab goes, and bob leaves the room: each leaves once, after the grace.
    tabs[1].close()
    t.same(await ack(bobAgain, 'leave', { room: 'lobby' }), { ok: true })
    await eventually(() => seen.length === 5, 10_000, 'two leaves')
    t.same(seen.slice(3).sort(), ['leave alice lobby', 'leave bob lobby'])
    await sleep(1200)
    t.equal(seen.length, 5, 'each leave once')
    t.same((await ack(carol, 'presence', { room: 'lobby' })).members, [{ sub: 'carol', connections: 1 }])

    t.equal((await ack(carol, 'presence', { room: 'elsewhere' })).error.code, 'FORBIDDEN', 'presence needs subscribe')
    // A room whose name ends like the store's own keys is a room of its own (its key is never another room's hash).
    t.same(await ack(carol, 'join', { room: 'room:x' }), { ok: true })
    await eventually(async () => (await ack(carol, 'presence', { room: 'room:x' })).count === 1, 10_000, 'carol in room:x')
    for (const suffix of [':by', ':gone', '\u0000by']) {
      const other = await ack(carol, 'presence', { room: `room:x${suffix}` })
      t.equal(other.ok === true ? other.count : other.error.code, suffix.startsWith(':') ? 0 : 'VALIDATION_FAILED', `room:x${JSON.stringify(suffix)} shows nothing of room:x`)
    }
    t.equal((await ack(carol, 'presence', {})).error.code, 'VALIDATION_FAILED')
    t.equal((await ack(carol, 'presence:join', { room: 'lobby', data: { sub: 'mallory' } })).error.code, 'FORBIDDEN', 'presence events are the gateway\'s')
    const notes = await as('carol', '/notification')
    t.equal((await ack(notes, 'presence', { room: 'lobby' })).error.code, 'VALIDATION_FAILED')
  })
}
