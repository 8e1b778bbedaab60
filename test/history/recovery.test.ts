import t, { type Test } from 'tap'
import type { Socket as ClientSocket } from 'socket.io-client'
import { buildApp, buildFrom, isolatedEnv, listen, realServers } from '../helper.js'
import { ack, connectAs, eventually, keyWithPolicy, replacePolicy, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'

// SPEC §12 on both stores: Redis streams (real servers) and the in-process rings (embedded).
const RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'room:*'] }]
const LIMITS = { ...ROOMY_LIMITS, RATE_LIMIT_SOCKET: '100000/second' }

interface Relayed { id: string, room: string, data: unknown, from: { sub: string } }

/** Every `message` the socket gets, in arrival order. */
function collect (socket: ClientSocket): Relayed[] {
  const got: Relayed[] = []
  socket.on('message', (message: Relayed) => { got.push(message) })
  return got
}

const idOrder = (a: string, b: string): number => {
  const [am, as] = a.split('-').map(Number)
  const [bm, bs] = b.split('-').map(Number)
  return am !== bm ? am - bm : as - bs
}

for (const embedded of realServers ? [false, true] : [true]) {
  const where = embedded ? 'in process' : 'in Redis'

  t.test(`history keeps a room's last HISTORY_SIZE messages, ordered (${where})`, async (t) => {
    const app = await buildApp(t, { ...LIMITS, HISTORY_SIZE: '5' }, { embedded })
    const url = await listen(app)
    const { apiKey } = await keyWithPolicy(app, RULES)
    const alice = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
    const ids: string[] = []
    for (let i = 0; i < 8; i++) ids.push((await ack(alice, 'message', { room: 'lobby', data: i })).id)
    t.same([...ids].sort(idOrder), ids, 'ids are ordered within the room')
    t.equal(new Set(ids).size, 8)
    const all = await ack(alice, 'history', { room: 'lobby' })
    t.equal(all.ok, true)
    t.same(all.messages.map((m: Relayed) => m.data), [3, 4, 5, 6, 7], 'the last five, oldest first')
    t.match(all.messages[0], { id: ids[3], event: 'message', room: 'lobby', from: { sub: 'alice' }, data: 3 })
    t.same((await ack(alice, 'history', { room: 'lobby', limit: 2 })).messages.map((m: Relayed) => m.data), [6, 7])
    t.same((await ack(alice, 'history', { room: 'lobby', limit: 500 })).messages.length, 5, 'the limit is capped at HISTORY_SIZE')
    t.same((await ack(alice, 'history', { room: 'room:quiet' })).messages, [], 'a room without messages has none')
    t.equal((await ack(alice, 'history', { room: 'elsewhere' })).error.code, 'FORBIDDEN', 'policy subscribe is checked')
    t.equal((await ack(alice, 'history', { room: 'lobby', limit: 0 })).error.code, 'VALIDATION_FAILED')
    t.equal((await ack(alice, 'history', { room: 'lobby', extra: 1 })).error.code, 'VALIDATION_FAILED')
    // /notification keeps no history by default: its message ids stay UUIDs.
    t.match((await ack(alice, 'history', { room: 'lobby' })).messages.length, 5)
  })

  t.test(`a message is kept HISTORY_TTL_SECONDS, then neither listed nor replayed (${where})`, async (t) => {
    const app = await buildApp(t, { ...LIMITS, HISTORY_TTL_SECONDS: '1' }, { embedded })
    const url = await listen(app)
    const { apiKey } = await keyWithPolicy(app, RULES)
    const alice = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
    const id = (await ack(alice, 'message', { room: 'lobby', data: 'soon gone' })).id
    t.equal((await ack(alice, 'history', { room: 'lobby' })).messages.length, 1, 'kept at first')
    await eventually(async () => (await ack(alice, 'history', { room: 'lobby' })).messages.length === 0, 10_000, 'the message to expire')
    const bob = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
    t.match(await ack(bob, 'join', { room: 'lobby', since: id }), { ok: true, recovered: false, missed: 0 }, 'past the TTL a since is a gap')
  })

  t.test(`join with since replays what was missed, then live, none twice (${where})`, async (t) => {
    const app = await buildApp(t, { ...LIMITS, HISTORY_SIZE: '20' }, { embedded })
    const url = await listen(app)
    const { apiKey, policyId } = await keyWithPolicy(app, RULES)
    const alice = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
    const bob = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
    t.same(await ack(bob, 'join', { room: 'lobby' }), { ok: true })
    const seen = collect(bob)
    const first = (await ack(alice, 'message', { room: 'lobby', data: 'seen' })).id
    await eventually(() => seen.length === 1, 10_000, 'bob got the first')
    bob.close()
    const missed: string[] = []
    for (let i = 0; i < 3; i++) missed.push((await ack(alice, 'message', { room: 'lobby', data: `missed ${i}` })).id)

    const again = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
    const replayed = collect(again)
    t.same(await ack(again, 'join', { room: 'lobby', since: first }), { ok: true, recovered: true, missed: 3 })
    t.same(replayed.map((m) => m.id), missed, 'the three missed, in order, before the ack')
    const live = (await ack(alice, 'message', { room: 'lobby', data: 'live' })).id
    await eventually(() => replayed.length === 4, 10_000, 'the live one')
    t.same(replayed.map((m) => m.id), [...missed, live])

    t.same(await ack(again, 'join', { room: 'lobby', since: first }), { ok: true, recovered: true, missed: 0 }, 'in the room already: nothing replayed again')
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.equal(replayed.length, 4, 'no repeat')
    const up = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
    t.same(await ack(up, 'join', { room: 'lobby', since: live }), { ok: true, recovered: true, missed: 0 }, 'nothing missed')
    const past = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
    const stale = collect(past)
    t.match(await ack(past, 'join', { room: 'lobby', since: '1-0' }), { ok: true, recovered: false, missed: 5 }, 'since older than what is kept: a gap, and what is kept')
    t.equal(stale.length, 5)
    t.match(await ack(await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob')), 'join', { room: 'lobby', since: 'not-an-id' }), { ok: true, recovered: false })
    t.equal((await ack(past, 'join', { room: 'lobby', since: '' })).error.code, 'VALIDATION_FAILED')

    // A room the policy no longer allows is not replayed: the join is refused before anything is read.
    await replacePolicy(app, policyId, [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['room:*'] }])
    const late = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
    const none = collect(late)
    t.equal((await ack(late, 'join', { room: 'lobby', since: first })).error.code, 'FORBIDDEN')
    t.same(none, [])
  })

  t.test(`the handover from replay to live under load: every message exactly once, in order (${where})`, async (t) => {
    const app = await buildApp(t, { ...LIMITS, HISTORY_SIZE: '1000' }, { embedded })
    const url = await listen(app)
    const { apiKey } = await keyWithPolicy(app, RULES)
    const received = await handoverUnderLoad(t, { url, token: await tokenFor(app, apiKey, 'alice') }, { url, token: async () => await tokenFor(app, apiKey, 'bob') }, 8)
    t.ok(received > 50, 'the load ran through the reconnects')
  })
}

t.test('the handover across instances: a publisher on one, a client re-joining on another under load, every message once, in order', { skip: realServers ? false : 'needs the real Redis of make test' }, async (t) => {
  const env = await isolatedEnv(t, { ...LIMITS, HISTORY_SIZE: '1000' })
  const [first, second] = [await buildFrom(t, env), await buildFrom(t, env)]
  const [url1, url2] = [await listen(first), await listen(second)]
  const { apiKey } = await keyWithPolicy(first, RULES)
  await handoverUnderLoad(t, { url: url1, token: await tokenFor(first, apiKey, 'alice') }, { url: url2, token: async () => await tokenFor(second, apiKey, 'bob') }, 10)
})

/**
 * Alice publishes to room:busy without pause (16 in flight) while bob joins,
 * leaves after a while and re-joins with `since`, `rounds` times: everything
 * published from bob's first message to his last reached him once, in the
 * room's order. Returns how many he got.
 */
async function handoverUnderLoad (t: Test, publisher: { url: string, token: string }, member: { url: string, token: () => Promise<string> }, rounds: number): Promise<number> {
  const alice = await connectAs(t, publisher.url, '/chat', publisher.token)
  const published: string[] = []
  let publishing = true
  const load = (async () => {
    let n = 0
    while (publishing) {
      const batch = Array.from({ length: 16 }, () => alice.timeout(10_000).emitWithAck('message', { room: 'room:busy', data: n++ }))
      for (const answer of await Promise.all(batch)) published.push(answer.id)
    }
  })()
  let since: string | undefined
  const received: string[] = []
  for (let round = 0; round < rounds; round++) {
    const bob = await connectAs(t, member.url, '/chat', await member.token())
    const got = collect(bob)
    const answer = await ack(bob, 'join', since === undefined ? { room: 'room:busy' } : { room: 'room:busy', since })
    t.equal(answer.ok, true)
    if (since !== undefined) t.equal(answer.recovered, true, `round ${round} recovered`)
    await new Promise((resolve) => setTimeout(resolve, 30 + 20 * round))
    bob.close()
    received.push(...got.map((m) => m.id))
    since = received.at(-1) ?? since
  }
  publishing = false
  await load
  const start = published.indexOf(received[0])
  t.ok(start >= 0, 'bob\'s first message was published')
  const expected = published.slice(start).sort(idOrder).filter((id) => idOrder(id, received.at(-1)!) <= 0)
  t.equal(received.length - new Set(received).size, 0, 'none twice')
  t.same(received, expected, `every message once, in order (${received.length} over ${rounds} re-joins)`)
  return received.length
}
