import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { RelayedMessage } from '../../src/sdk/index.js'
import { buildApp, listen } from '../helper.js'
import { eventually, keyWithPolicy, ROOMY_LIMITS, WAIT_MS } from '../support/sockets.js'
import { CHAT_RULES, FAST, sdkClient } from './fixtures.js'

/** Holds new handshakes on /chat (after the gateway's own checks) until opened: the client is away meanwhile. */
function handshakeGate (app: FastifyInstance): { close: () => void, open: () => void } {
  let waiting: Array<() => void> | undefined
  app.io.of('/chat').use((_socket, next) => {
    if (waiting === undefined) next()
    else waiting.push(() => { next() })
  })
  return {
    close: () => { waiting = [] },
    open: () => {
      const held = waiting ?? []
      waiting = undefined
      for (const release of held) release()
    }
  }
}

async function setUp (t: Tap, env: Record<string, string> = {}) {
  const app = await buildApp(t, { ...ROOMY_LIMITS, ...env })
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const alice = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST }).namespace('/chat')
  const bob = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'bob' }, ...FAST })
  const bobChat = bob.namespace('/chat')
  await Promise.all([alice.ready(), bobChat.join('lobby')])
  const got: RelayedMessage[] = []
  bobChat.on('message', (m) => { got.push(m) })
  const outcomes: string[] = []
  bob.on('recovered', (ns, room, missed) => { outcomes.push(`recovered ${ns} ${room} ${missed}`) })
  bob.on('gap', (ns, room) => { outcomes.push(`gap ${ns} ${room}`) })
  const bobSocket = () => [...app.io.of('/chat').sockets.values()].find((s) => s.data.principal.sub === 'bob')!
  return { app, alice, bob, bobChat, got, outcomes, bobSocket, gate: handshakeGate(app) }
}
type Tap = { teardown: (fn: () => unknown) => void }

t.test('SDK: after a reconnect it re-joins from the last message it got: every missed message once, in order', async (t) => {
  const { alice, got, outcomes, bobSocket, gate } = await setUp(t)
  const sent = [(await alice.publish('message', 'lobby', 'before')).id]
  await eventually(() => got.length === 1, WAIT_MS, 'bob got the first')
  gate.close()
  // Closed by the gateway without a refusal: the SDK reconnects by itself, with a new session.
  bobSocket().disconnect()
  for (let i = 0; i < 3; i++) sent.push((await alice.publish('message', 'lobby', `away ${i}`)).id)
  gate.open()
  await eventually(() => outcomes.length === 1, WAIT_MS, 'the re-join')
  t.same(outcomes, ['recovered /chat lobby 3'])
  sent.push((await alice.publish('message', 'lobby', 'after')).id)
  await eventually(() => got.length === 5, WAIT_MS, 'the live one')
  t.same(got.map((m) => m.id), sent, 'in order, none twice')
})

t.test('SDK: after a dropped transport it recovers with since, and a message that reaches it twice is delivered once', async (t) => {
  const { alice, got, outcomes, bobSocket, gate } = await setUp(t)
  const sent = [(await alice.publish('message', 'lobby', 'before')).id]
  await eventually(() => got.length === 1, WAIT_MS, 'bob got the first')
  gate.close()
  bobSocket().conn.close()
  for (let i = 0; i < 3; i++) sent.push((await alice.publish('message', 'lobby', `away ${i}`)).id)
  gate.open()
  await eventually(() => outcomes.length === 1, WAIT_MS, 'the re-join')
  t.match(outcomes[0], /^recovered \/chat lobby/)
  sent.push((await alice.publish('message', 'lobby', 'after')).id)
  await eventually(() => got.length >= 5, WAIT_MS, 'the live one')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(got.map((m) => m.id), sent, 'each message once')
  // A message that reaches the client twice (two replays overlapping, instances racing) is delivered once.
  bobSocket().emit('message', { ...got[2] })
  bobSocket().emit('message', { id: 'other', room: 'lobby', from: { sub: 'alice' }, data: 'new', ts: Date.now() })
  await eventually(() => got.length === 6, WAIT_MS, 'the new one')
  t.same(got.map((m) => m.id), [...sent, 'other'], 'the repeat was dropped')
})

t.test('SDK: a gap past what the room keeps is reported, and what is kept delivered', async (t) => {
  const { alice, got, outcomes, bobSocket, gate } = await setUp(t, { HISTORY_SIZE: '2' })
  await alice.publish('message', 'lobby', 'before')
  await eventually(() => got.length === 1, WAIT_MS, 'bob got the first')
  gate.close()
  bobSocket().disconnect()
  const sent: string[] = []
  for (let i = 0; i < 4; i++) sent.push((await alice.publish('message', 'lobby', `away ${i}`)).id)
  gate.open()
  await eventually(() => outcomes.length === 1, WAIT_MS, 'the re-join')
  t.same(outcomes, ['gap /chat lobby'])
  await eventually(() => got.length === 3, WAIT_MS, 'the kept two')
  t.same(got.slice(1).map((m) => m.id), sent.slice(2), 'the two the room kept')
})

t.test('SDK: presence, history, and presence events through on', async (t) => {
  const { alice, bobChat } = await setUp(t)
  const joins: string[] = []
  bobChat.on<{ sub: string }>('presence:join', (e) => { joins.push(e.sub) })
  await alice.join('lobby')
  await eventually(() => joins.includes('alice'), WAIT_MS, 'alice\'s presence:join')
  const presence = await bobChat.presence('lobby')
  t.equal(presence.count, 2)
  t.same(presence.members.map((m) => m.sub).sort(), ['alice', 'bob'])
  t.equal(presence.truncated, false)
  const ids = [(await alice.publish('message', 'lobby', 1)).id, (await alice.publish('message', 'lobby', 2)).id]
  const history = await bobChat.history('lobby')
  t.same(history.map((m) => [m.id, m.event, m.data]), [[ids[0], 'message', 1], [ids[1], 'message', 2]])
  t.same((await bobChat.history('lobby', 1)).map((m) => m.data), [2])
  await t.rejects(bobChat.presence('elsewhere'), { code: 'FORBIDDEN' })
})
