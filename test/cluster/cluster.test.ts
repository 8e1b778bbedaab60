import t from 'tap'
import { io, type Socket } from 'socket.io-client'
import { ADMIN_KEY, isolatedEnv, realServers, sleep } from '../helper.js'
import { eventually, WAIT_MS } from '../support/sockets.js'
import { startInstance, stopInstance, type Instance } from '../support/cluster.js'

// Three real gateway processes on one Redis and one PostgreSQL (SPEC §1: nothing correct on one instance may become wrong on three).
t.test('three instances behave as one gateway', { skip: realServers ? false : 'needs the real PostgreSQL and Redis of make test' }, async (t) => {
  const env = await isolatedEnv(t, {
    LOG_LEVEL: 'warn',
    TRUST_PROXY: 'true',
    RATE_LIMIT_TOKEN: '5/minute',
    RATE_LIMIT_CONNECT: '1000/minute',
    ANOMALY_MAX_FAILURES: '1000/minute',
    JWT_SECRET: 'cluster-test-secret-0123456789abcdefghijklmnop'
  })
  const nodes: Instance[] = await Promise.all([startInstance(env), startInstance(env), startInstance(env)])
  t.teardown(async () => { await Promise.all(nodes.map(async (n) => await stopInstance(n))) })

  let nextIp = 1
  /** Each token comes "from" its own client address (TRUST_PROXY), so the per-IP token limit is only hit on purpose. */
  const freshIp = (): string => `10.77.${Math.floor(nextIp / 250)}.${(nextIp++ % 250) + 1}`

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the response's JSON, read field by field by the test
  async function api (node: Instance, method: string, path: string, body?: unknown, headers: Record<string, string> = { 'x-api-key': ADMIN_KEY }): Promise<{ status: number, json: any }> {
    const res = await fetch(node.url + path, {
      method,
      headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await res.text()
    return { status: res.status, json: text.length > 0 ? JSON.parse(text) : undefined }
  }

  const rules = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'room:*'] }]
  const policy = await api(nodes[0], 'POST', '/v1/policies', { name: 'cluster-chat', rules })
  t.equal(policy.status, 201)

  async function newKey (extra: Record<string, unknown> = {}): Promise<{ id: string, apiKey: string }> {
    const res = await api(nodes[0], 'POST', '/v1/keys', { name: 'cluster', scopes: ['publish', 'token:delegate'], policyId: policy.json.id, ...extra })
    return res.json
  }
  async function token (node: Instance, apiKey: string, sub: string, ip = freshIp()): Promise<string> {
    const res = await api(node, 'POST', '/auth/token', { sub }, { 'x-api-key': apiKey, 'x-forwarded-for': ip })
    if (res.status !== 200) throw new Error(`token: ${res.status} ${JSON.stringify(res.json)}`)
    return res.json.accessToken
  }
  async function socketOn (node: Instance, tokenValue: string): Promise<Socket> {
    const socket = io(`${node.url}/chat`, { auth: { token: tokenValue }, transports: ['websocket'], reconnection: false, forceNew: true })
    t.teardown(() => { socket.close() })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('connect_error', (err) => reject(err))
    })
    return socket
  }
  const key = await newKey()

  await t.test('a message from instance 1 reaches members on 2 and 3 exactly once; an HTTP publish through 2 likewise', async (t) => {
    const sender = await socketOn(nodes[0], await token(nodes[0], key.apiKey, 'sender'))
    const members = [await socketOn(nodes[1], await token(nodes[1], key.apiKey, 'm2')), await socketOn(nodes[2], await token(nodes[2], key.apiKey, 'm3'))]
    for (const m of members) t.same(await m.emitWithAck('join', { room: 'room:fanout' }), { ok: true })
    const received: string[][] = members.map(() => [])
    members.forEach((m, i) => m.on('message', (msg: { id: string }) => received[i].push(msg.id)))
    const ack = await sender.emitWithAck('message', { room: 'room:fanout', data: 'hello' })
    const published = await api(nodes[1], 'POST', '/v1/publish', { namespace: '/chat', room: 'room:fanout', event: 'message', data: 'from http' }, { 'x-api-key': key.apiKey })
    t.equal(published.status, 202)
    // Until both arrived (polled: later on a loaded machine), then a while longer for a duplicate to show.
    await eventually(() => received.every((ids) => ids.length >= 2), WAIT_MS, 'both messages on both members').catch(() => {})
    await sleep(300)
    for (const ids of received) t.same(ids.sort(), [ack.id, published.json.id].sort(), 'each member got each message once')
  })

  await t.test('two tenants with the same room and subject names stay apart across the instances (SPEC §14)', async (t) => {
    const tenantRules = [
      { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['room:*', 'user:*'] },
      { effect: 'allow', namespace: '/error', actions: ['connect'] }
    ]
    const tenantPolicy = await api(nodes[0], 'POST', '/v1/policies', { name: 'cluster-tenants', rules: tenantRules })
    const keyOf = async (tenant: string): Promise<{ apiKey: string }> =>
      (await api(nodes[0], 'POST', '/v1/keys', { name: tenant, tenant, scopes: ['publish', 'token:delegate'], policyId: tenantPolicy.json.id })).json
    const [a, b] = [await keyOf('app-a'), await keyOf('app-b')]
    async function on (node: Instance, apiKey: string, sub: string, namespace = '/chat'): Promise<Socket> {
      const socket = io(`${node.url}${namespace}`, { auth: { token: await token(node, apiKey, sub) }, transports: ['websocket'], reconnection: false, forceNew: true })
      t.teardown(() => { socket.close() })
      await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('connect_error', reject) })
      return socket
    }
    const aliceOfA = await on(nodes[0], a.apiKey, 'alice')
    const bobOfA = await on(nodes[1], a.apiKey, 'bob')
    const bobOfB = await on(nodes[2], b.apiKey, 'bob')
    const carolOfB = await on(nodes[1], b.apiKey, 'carol')
    for (const s of [aliceOfA, bobOfA, bobOfB, carolOfB]) t.same(await s.emitWithAck('join', { room: 'room:shared' }), { ok: true })
    const got = new Map<Socket, unknown[]>([[bobOfA, []], [bobOfB, []]])
    for (const [s, list] of got) s.on('message', (m: { data: unknown }) => list.push(m.data))
    const errorsOfA = await on(nodes[2], a.apiKey, 'bob', '/error')
    const errorsOfB = await on(nodes[0], b.apiKey, 'bob', '/error')
    const mirrored = new Map<Socket, string[]>([[errorsOfA, []], [errorsOfB, []]])
    for (const [s, list] of mirrored) s.on('gateway:error', (e: { code: string }) => list.push(e.code))

    t.equal((await aliceOfA.emitWithAck('message', { room: 'room:shared', data: 'A relay' })).ok, true)
    t.equal((await carolOfB.emitWithAck('message', { room: 'room:shared', data: 'B relay' })).ok, true)
    t.equal((await api(nodes[0], 'POST', '/v1/publish', { namespace: '/chat', room: 'user:bob', event: 'message', data: 'B private' }, { 'x-api-key': b.apiKey })).status, 202)
    t.equal((await api(nodes[1], 'POST', '/v1/publish', { namespace: '/chat', room: 'room:shared', event: 'message', data: 'A by root', tenant: 'app-a' })).status, 202)
    t.equal((await bobOfA.emitWithAck('message', { room: 'lobby', data: 'refused' })).error.code, 'FORBIDDEN')
    await eventually(() => got.get(bobOfA)!.length >= 2 && got.get(bobOfB)!.length >= 2 && mirrored.get(errorsOfA)!.length >= 1, WAIT_MS, 'every delivery').catch(() => {})
    // A while longer for anything that crossed to show.
    await sleep(300)
    t.same(got.get(bobOfA)!.sort(), ['A by root', 'A relay'], 'A\'s bob got A\'s messages only')
    t.same(got.get(bobOfB)!.sort(), ['B private', 'B relay'], 'B\'s bob got B\'s messages only')
    t.same(mirrored.get(errorsOfA), ['FORBIDDEN'], 'A\'s bob heard his refusal on another instance')
    t.same(mirrored.get(errorsOfB), [], 'B\'s bob heard nothing of it')
    const presenceOfA = await bobOfA.emitWithAck('presence', { room: 'room:shared' })
    t.same(presenceOfA.members.map((m: { sub: string }) => m.sub).sort(), ['alice', 'bob'], 'presence across instances counts A\'s subjects only')
    const historyOfB = await bobOfB.emitWithAck('history', { room: 'room:shared' })
    t.same(historyOfB.messages.map((m: { data: unknown }) => m.data), ['B relay'], 'B\'s history holds B\'s message only')
  })

  await t.test('a key revoked through instance 2 disconnects its sockets on 1 and 3 at once, and the response counts them', async (t) => {
    const doomed = await newKey()
    const sockets = [await socketOn(nodes[0], await token(nodes[0], doomed.apiKey, 'a')), await socketOn(nodes[2], await token(nodes[2], doomed.apiKey, 'b'))]
    const gone = sockets.map(async (s) => await new Promise<number>((resolve) => { s.once('disconnect', () => resolve(Date.now())) }))
    const started = Date.now()
    const res = await api(nodes[1], 'POST', `/v1/keys/${doomed.id}/revoke`)
    t.equal(res.status, 200)
    t.equal(res.json.disconnected, 2)
    t.notOk(res.json.incomplete)
    // SPEC §3 says within 1 s; on a loaded 2-core machine this took up to 368 ms (the revoke call itself
    // included), so the bound is 2 s: a push, not a cache expiry (30 s) or the token's exp.
    for (const at of await Promise.all(gone)) t.ok(at - started < 2000, `disconnected after ${at - started} ms`)
  })

  await t.test('a policy change through instance 3 is enforced on instance 1 within 1 s', async (t) => {
    const own = await api(nodes[0], 'POST', '/v1/policies', { name: 'cluster-live', rules })
    const k = await newKey({ policyId: own.json.id })
    const s = await socketOn(nodes[0], await token(nodes[0], k.apiKey, 'live'))
    t.equal((await s.emitWithAck('message', { room: 'room:x', data: 1 })).ok, true, 'allowed before')
    const narrowed = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }]
    t.equal((await api(nodes[2], 'PUT', `/v1/policies/${own.json.id}`, { name: 'cluster-live', rules: narrowed })).status, 200)
    const started = Date.now()
    let refusedAt = 0
    while (Date.now() - started < 2000) {
      const ack = await s.emitWithAck('message', { room: 'room:x', data: 2 })
      if (ack.ok === false) { refusedAt = Date.now(); t.equal(ack.error.code, 'FORBIDDEN'); break }
      await sleep(50)
    }
    t.ok(refusedAt > 0 && refusedAt - started < 1000, `refused after ${refusedAt - started} ms`)
  })

  await t.test('a per-key limit of N publishes holds to N across the three instances', async (t) => {
    const limited = await newKey({ rateLimit: { max: 6, windowSeconds: 60 } })
    const sockets = await Promise.all(nodes.map(async (n, i) => await socketOn(n, await token(n, limited.apiKey, `lim${i}`))))
    let accepted = 0
    for (let round = 0; round < 4; round++) {
      const acks = await Promise.all(sockets.map(async (s) => await s.emitWithAck('message', { room: 'lobby', data: round })))
      accepted += acks.filter((a) => a.ok === true).length
    }
    const http = await api(nodes[1], 'POST', '/v1/publish', { namespace: '/chat', room: 'lobby', event: 'message', data: 'x' }, { 'x-api-key': limited.apiKey })
    t.equal(accepted, 6, '6 of 12 socket publishes accepted')
    t.equal(http.status, 429, 'the HTTP publish counts in the same limit')
  })

  await t.test('RATE_LIMIT_TOKEN per IP holds across the three instances', async (t) => {
    const ip = freshIp()
    const statuses: number[] = []
    for (let i = 0; i < 7; i++) {
      const res = await api(nodes[i % 3], 'POST', '/auth/token', {}, { 'x-api-key': key.apiKey, 'x-forwarded-for': ip })
      statuses.push(res.status)
    }
    t.same(statuses, [200, 200, 200, 200, 200, 429, 429])
  })

  await t.test('maxConnections holds across instances', async (t) => {
    const capped = await newKey({ maxConnections: 2 })
    const first = await socketOn(nodes[0], await token(nodes[0], capped.apiKey, 'c1'))
    await socketOn(nodes[1], await token(nodes[1], capped.apiKey, 'c2'))
    const third = await socketOn(nodes[2], await token(nodes[2], capped.apiKey, 'c3')).catch((err: Error & { data?: { code: string } }) => err)
    t.equal((third as Error).message, 'RATE_LIMITED')
    first.close()
    // The slot is given back once instance 1 has seen the close: polled, not slept on.
    const c4 = await token(nodes[2], capped.apiKey, 'c4')
    const attempt = async (): Promise<Socket | Error> => await socketOn(nodes[2], c4).catch((err: Error) => err)
    const deadline = Date.now() + WAIT_MS
    let again = await attempt()
    while (again instanceof Error && Date.now() < deadline) {
      await sleep(50)
      again = await attempt()
    }
    t.ok(!(again instanceof Error) && again.connected, `a slot freed on one instance is usable on another (${again instanceof Error ? again.message : 'connected'})`)
  })

  await t.test('killing one instance (SIGKILL) loses no other instance\'s sockets', async (t) => {
    const a = await socketOn(nodes[0], await token(nodes[0], key.apiKey, 'survivor-a'))
    const b = await socketOn(nodes[1], await token(nodes[1], key.apiKey, 'survivor-b'))
    await socketOn(nodes[2], await token(nodes[2], key.apiKey, 'victim'))
    t.same(await b.emitWithAck('join', { room: 'room:survive' }), { ok: true })
    nodes[2].child.kill('SIGKILL')
    await nodes[2].exited
    await sleep(300)
    t.ok(a.connected && b.connected)
    const got = new Promise((resolve) => b.once('message', resolve))
    t.equal((await a.emitWithAck('message', { room: 'room:survive', data: 'still here' })).ok, true)
    t.match(await got, { data: 'still here', from: { sub: 'survivor-a' } })
  })
})
