import t from 'tap'
import { adminHeaders, buildApp, buildFrom, createKey, isolatedEnv, realServers } from '../helper.js'
import { eventually, WAIT_MS } from '../support/sockets.js'

const ENV = { RATE_LIMIT_TOKEN: '10000/minute', ANOMALY_MAX_FAILURES: '10000/minute' }

t.test('bootstrapAdmin creates one admin key, once', async (t) => {
  const app = await buildApp(t, ENV)
  const first = await app.keys.bootstrapAdmin()
  t.type(first, 'string')
  t.match(first, /^spk_[A-Za-z0-9-]{1,64}_[A-Za-z0-9_-]{43,}$/)
  t.equal(await app.keys.bootstrapAdmin(), undefined, 'not again while an admin key exists')
  const list = await app.inject({ url: '/v1/keys', headers: { 'x-api-key': first as string } })
  t.equal(list.statusCode, 200, 'the bootstrap key is an admin credential')
  t.same(list.json().items.map((k: { scopes: string[] }) => k.scopes), [['admin']])

  // Revoking the last admin key lets a later start create a new one.
  const id = list.json().items[0].id as string
  await app.inject({ method: 'POST', url: `/v1/keys/${id}/revoke`, headers: adminHeaders })
  t.type(await app.keys.bootstrapAdmin(), 'string', 'a new one once the only admin key is revoked')
})

t.test('instances starting together bootstrap a single admin key', { skip: !realServers && 'needs the real PostgreSQL' }, async (t) => {
  const env = await isolatedEnv(t, ENV)
  // Started one after another (the race under test is bootstrapAdmin's, not the start's).
  const apps = [await buildFrom(t, env), await buildFrom(t, env), await buildFrom(t, env)]
  const created = (await Promise.all(apps.map(async (app) => await app.keys.bootstrapAdmin()))).filter((k) => k !== undefined)
  t.equal(created.length, 1, 'exactly one instance created a key')
  const [{ n }] = await apps[0].sql<Array<{ n: string }>>`select count(*) as n from api_keys where 'admin' = any(scopes)`
  t.equal(Number(n), 1)
})

t.test('a key change on one instance reaches the cache of another within a second', { skip: !realServers && 'needs the real PostgreSQL and Redis' }, async (t) => {
  const env = await isolatedEnv(t, ENV)
  const a = await buildFrom(t, env)
  const b = await buildFrom(t, env)
  const { id, apiKey } = await createKey(a, { scopes: ['publish'] })
  // B caches the key by using it.
  t.equal((await b.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey } })).statusCode, 200)

  const rotated = await a.inject({ method: 'POST', url: `/v1/keys/${id}/rotate`, headers: adminHeaders, payload: {} })
  t.equal(rotated.statusCode, 200)
  // Polled, not read once after a sleep: B hears of the change through Redis, later on a loaded machine.
  const tokenOnB = async (key: string): Promise<{ statusCode: number, code?: string }> => {
    const res = await b.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': key } })
    return { statusCode: res.statusCode, code: res.json().code }
  }
  let changedAt = Date.now()
  await eventually(async () => (await tokenOnB(apiKey)).statusCode === 401, WAIT_MS, 'B refuses the old secret').catch(() => {})
  const rotationHeardAfter = Date.now() - changedAt
  t.equal((await tokenOnB(apiKey)).statusCode, 401, `B refuses the old secret (${rotationHeardAfter} ms after the rotation answered)`)
  t.ok(rotationHeardAfter < 1000, 'within a second')
  const newKey = rotated.json().apiKey as string
  t.equal((await b.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': newKey } })).statusCode, 200, 'B accepts the new one')

  await a.inject({ method: 'POST', url: `/v1/keys/${id}/revoke`, headers: adminHeaders })
  changedAt = Date.now()
  await eventually(async () => (await tokenOnB(newKey)).code === 'KEY_REVOKED', WAIT_MS, 'B knows the key is revoked').catch(() => {})
  const revokeHeardAfter = Date.now() - changedAt
  t.equal((await tokenOnB(newKey)).code, 'KEY_REVOKED', `B knows the key is revoked (${revokeHeardAfter} ms after the revoke answered)`)
  t.ok(revokeHeardAfter < 1000, 'within a second')
})

t.test('a policy change on one instance reaches another within a second', { skip: !realServers && 'needs the real PostgreSQL and Redis' }, async (t) => {
  const env = await isolatedEnv(t, ENV)
  const a = await buildFrom(t, env)
  const b = await buildFrom(t, env)
  const res = await a.inject({ method: 'POST', url: '/v1/policies', headers: adminHeaders, payload: { name: 'p', rules: [] } })
  const id = res.json().id as string
  const changed: string[] = []
  b.policies.onChange((policyId) => { changed.push(policyId) })
  await a.inject({ method: 'PUT', url: `/v1/policies/${id}`, headers: adminHeaders, payload: { name: 'p', rules: [{ effect: 'allow', namespace: '/chat', actions: ['connect'] }] } })
  const changedAt = Date.now()
  await eventually(() => b.policies.compiled(id).connect.allow.length > 0, WAIT_MS, 'B compiled the new rules').catch(() => {})
  const heardAfter = Date.now() - changedAt
  t.equal(b.policies.compiled(id).connect.allow.length, 1, `B compiled the new rules (${heardAfter} ms after the change answered)`)
  t.ok(heardAfter < 1000, 'within a second')
  t.ok(changed.includes(id), 'B\'s listeners heard of it')
})
