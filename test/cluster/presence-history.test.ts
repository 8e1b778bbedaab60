import t from 'tap'
import { io, type Socket } from 'socket.io-client'
import { ADMIN_KEY, isolatedEnv, realServers, sleep } from '../helper.js'
import { eventually } from '../support/sockets.js'
import { startInstance, stopInstance, type Instance } from '../support/cluster.js'

// SPEC §11–12 on three real processes sharing Redis and PostgreSQL, one of them SIGKILLed.
t.test('presence, history and recovery across three instances, and past a lost one', { skip: realServers ? false : 'needs the real PostgreSQL and Redis of make test' }, async (t) => {
  const env = await isolatedEnv(t, {
    LOG_LEVEL: 'warn',
    TRUST_PROXY: 'true',
    RATE_LIMIT_TOKEN: '1000/minute',
    RATE_LIMIT_CONNECT: '1000/minute',
    RATE_LIMIT_SOCKET: '100000/second',
    ANOMALY_MAX_FAILURES: '1000/minute',
    PRESENCE_GRACE_SECONDS: '1',
    JWT_SECRET: 'cluster-presence-secret-0123456789abcdefghijklmnop'
  })
  const nodes: Instance[] = await Promise.all([startInstance(env), startInstance(env), startInstance(env)])
  t.teardown(async () => { await Promise.all(nodes.map(async (n) => await stopInstance(n))) })

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the response's JSON, read field by field by the test
  async function api (node: Instance, method: string, path: string, body?: unknown, headers: Record<string, string> = { 'x-api-key': ADMIN_KEY }): Promise<{ status: number, json: any }> {
    const res = await fetch(node.url + path, { method, headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await res.text()
    return { status: res.status, json: text.length > 0 ? JSON.parse(text) : undefined }
  }
  const rules = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'room:*'] }]
  const policy = await api(nodes[0], 'POST', '/v1/policies', { name: 'presence-history', rules })
  const key = (await api(nodes[0], 'POST', '/v1/keys', { name: 'ph', scopes: ['publish', 'token:delegate'], policyId: policy.json.id })).json
  async function on (node: Instance, sub: string): Promise<Socket> {
    const token = (await api(node, 'POST', '/auth/token', { sub }, { 'x-api-key': key.apiKey })).json.accessToken
    const socket = io(`${node.url}/chat`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true })
    t.teardown(() => { socket.close() })
    await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('connect_error', reject) })
    return socket
  }
  const presenceLog = (socket: Socket): string[] => {
    const log: string[] = []
    socket.on('presence:join', (e: { sub: string }) => log.push(`join ${e.sub}`))
    socket.on('presence:leave', (e: { sub: string }) => log.push(`leave ${e.sub}`))
    return log
  }

  const observers = [await on(nodes[0], 'watcher-1'), await on(nodes[1], 'watcher-2')]
  const logs = observers.map(presenceLog)
  for (const o of observers) t.same(await o.emitWithAck('join', { room: 'lobby' }), { ok: true })

  await t.test('presence counts subjects across instances, two tabs on two instances once', async (t) => {
    const tabs = [await on(nodes[1], 'alice'), await on(nodes[2], 'alice')]
    for (const tab of tabs) t.same(await tab.emitWithAck('join', { room: 'lobby' }), { ok: true })
    const dave = await on(nodes[2], 'dave')
    t.same(await dave.emitWithAck('join', { room: 'lobby' }), { ok: true })
    await eventually(() => logs.every((log) => log.includes('join dave') && log.includes('join alice')), 10_000, 'joins on both observers')
    const snapshot = await observers[0].emitWithAck('presence', { room: 'lobby' })
    t.equal(snapshot.count, 4, 'two watchers, alice, dave')
    t.same(Object.fromEntries(snapshot.members.map((m: { sub: string, connections: number }) => [m.sub, m.connections])), { 'watcher-1': 1, 'watcher-2': 1, alice: 2, dave: 1 })
    t.equal((await api(nodes[2], 'GET', '/v1/presence?namespace=/chat&room=lobby')).json.count, 4, 'every instance says the same')
    tabs[0].close()
    await sleep(1500)
    for (const log of logs) t.equal(log.filter((e) => e === 'join alice').length, 1, 'alice joined once, and has not left')
    for (const log of logs) t.notOk(log.includes('leave alice'))
  })

  await t.test('history and recovery: since on another instance, then after the old one was SIGKILLed', async (t) => {
    const alice = await on(nodes[0], 'alice-sender')
    const bob = await on(nodes[2], 'bob')
    t.same(await bob.emitWithAck('join', { room: 'room:r' }), { ok: true })
    const got: string[] = []
    bob.on('message', (m: { id: string }) => got.push(m.id))
    const sent: string[] = []
    for (let i = 0; i < 5; i++) sent.push((await alice.emitWithAck('message', { room: 'room:r', data: i })).id)
    await eventually(() => got.length === 5, 10_000, 'bob got five')
    t.same(got, sent)
    const history = await (await on(nodes[1], 'carol')).emitWithAck('history', { room: 'room:r' })
    t.same(history.messages.map((m: { id: string }) => m.id), sent, 'history is the same on another instance')

    // Bob's instance is killed; messages go on meanwhile, some during his replay.
    const victim = nodes[2]
    const started = Date.now()
    victim.child.kill('SIGKILL')
    await victim.exited
    for (let i = 5; i < 10; i++) sent.push((await alice.emitWithAck('message', { room: 'room:r', data: i })).id)
    const back = await on(nodes[1], 'bob')
    const replayed: string[] = []
    back.on('message', (m: { id: string }) => replayed.push(m.id))
    const during = alice.emitWithAck('message', { room: 'room:r', data: 'during' })
    const answer = await back.emitWithAck('join', { room: 'room:r', since: got.at(-1) })
    sent.push((await during).id)
    t.equal(answer.recovered, true)
    for (let i = 11; i < 14; i++) sent.push((await alice.emitWithAck('message', { room: 'room:r', data: i })).id)
    await eventually(() => replayed.length >= 9, 10_000, 'the missed and the newer')
    await sleep(300)
    t.same(replayed, sent.slice(5), 'every missed message once, in order, then the live ones')

    // The killed instance's members (dave, alice's other tab) leave on the survivors, once, within 20 s.
    await eventually(() => logs.every((log) => log.includes('leave dave') && log.includes('leave alice')), 25_000, 'leaves of the dead instance')
    const took = Date.now() - started
    t.ok(took < 20_000, `the dead instance's members left after ${took} ms`)
    await sleep(2500)
    for (const log of logs) {
      t.equal(log.filter((e) => e === 'leave dave').length, 1, 'dave left once')
      t.equal(log.filter((e) => e === 'leave alice').length, 1, 'alice left once')
    }
    t.equal((await observers[0].emitWithAck('presence', { room: 'lobby' })).count, 2, 'only the watchers are left')
  })
})
