import { randomUUID } from 'node:crypto'
import t from 'tap'
import { can } from '../../src/policies/engine.js'
import { MAX_POLICY_PATTERN_CHARS, policyPatternChars, type PolicyRule } from '../../src/policies/types.js'
import { adminHeaders, buildApp, createKey, createPolicy, mintToken } from '../helper.js'
import { assertError } from '../support/assert.js'

const POLICY_FIELDS = ['createdAt', 'id', 'name', 'rules', 'updatedAt']
const alice = { sub: 'alice', keyId: 'k1' }

const chatRules: PolicyRule[] = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['message'], rooms: ['lobby', 'room:*', 'user:${sub}'] },
  { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly*'] }
]

t.test('policy CRUD', async (t) => {
  const app = await buildApp(t)
  const created = await app.inject({ method: 'POST', url: '/v1/policies', headers: adminHeaders, payload: { name: 'chat-user', rules: chatRules } })
  t.equal(created.statusCode, 201, created.body)
  const policy = created.json()
  t.same(Object.keys(policy).sort(), POLICY_FIELDS)
  t.match(policy.id, /^[A-Za-z0-9-]{1,64}$/)
  t.equal(policy.name, 'chat-user')
  t.same(policy.rules, chatRules, 'rules come back as sent, ${sub} untouched')

  const got = await app.inject({ url: `/v1/policies/${policy.id}`, headers: adminHeaders })
  t.equal(got.statusCode, 200)
  t.same(got.json(), policy)

  const second = await createPolicy(app, [], 'empty')
  const list = await app.inject({ url: '/v1/policies', headers: adminHeaders })
  t.equal(list.statusCode, 200)
  t.same(list.json().items.map((p: { id: string }) => p.id), [second, policy.id], 'newest first')
  t.equal(list.json().nextCursor, null)
  const page1 = await app.inject({ url: '/v1/policies?limit=1', headers: adminHeaders })
  t.same(page1.json().items.map((p: { id: string }) => p.id), [second])
  const page2 = await app.inject({ url: `/v1/policies?limit=1&cursor=${encodeURIComponent(page1.json().nextCursor as string)}`, headers: adminHeaders })
  t.same(page2.json().items.map((p: { id: string }) => p.id), [policy.id])
  t.equal(page2.json().nextCursor, null)
  assertError(t, await app.inject({ url: '/v1/policies?cursor=nope', headers: adminHeaders }), 400, 'VALIDATION_FAILED', 'malformed cursor')

  const replaced = await app.inject({ method: 'PUT', url: `/v1/policies/${policy.id}`, headers: adminHeaders, payload: { name: 'chat-user-2', rules: [] } })
  t.equal(replaced.statusCode, 200, replaced.body)
  t.equal(replaced.json().name, 'chat-user-2')
  t.same(replaced.json().rules, [])
  t.equal(replaced.json().createdAt, policy.createdAt, 'createdAt stays')
  t.ok(Date.parse(replaced.json().updatedAt) >= Date.parse(policy.updatedAt), 'updatedAt moves on')

  const removed = await app.inject({ method: 'DELETE', url: `/v1/policies/${policy.id}`, headers: adminHeaders })
  t.equal(removed.statusCode, 204)
  t.equal(removed.body, '')
  assertError(t, await app.inject({ url: `/v1/policies/${policy.id}`, headers: adminHeaders }), 404, 'NOT_FOUND', 'a deleted policy is gone')
  assertError(t, await app.inject({ method: 'DELETE', url: `/v1/policies/${policy.id}`, headers: adminHeaders }), 404, 'NOT_FOUND', 'deleting twice')
})

t.test('an unknown or malformed policy id is 404', async (t) => {
  const app = await buildApp(t)
  for (const id of [randomUUID(), '%20bad_id!', 'x'.repeat(65), 'x'.repeat(250), '%ZZ']) {
    assertError(t, await app.inject({ url: `/v1/policies/${id}`, headers: adminHeaders }), 404, 'NOT_FOUND', `GET ${id}`)
    assertError(t, await app.inject({ method: 'PUT', url: `/v1/policies/${id}`, headers: adminHeaders, payload: { name: 'x', rules: [] } }), 404, 'NOT_FOUND', `PUT ${id}`)
    assertError(t, await app.inject({ method: 'DELETE', url: `/v1/policies/${id}`, headers: adminHeaders }), 404, 'NOT_FOUND', `DELETE ${id}`)
  }
})

t.test('policy names are unique', async (t) => {
  const app = await buildApp(t)
  await createPolicy(app, [], 'taken')
  const other = await createPolicy(app, [], 'other')
  assertError(t, await app.inject({ method: 'POST', url: '/v1/policies', headers: adminHeaders, payload: { name: 'taken', rules: [] } }), 409, 'CONFLICT', 'a second policy with the name')
  assertError(t, await app.inject({ method: 'PUT', url: `/v1/policies/${other}`, headers: adminHeaders, payload: { name: 'taken', rules: [] } }), 409, 'CONFLICT', 'renaming onto a taken name')
  const [{ n }] = await app.sql<Array<{ n: string }>>`select count(*) as n from policies`
  t.equal(Number(n), 2)
})

t.test('a policy in use by a key cannot be deleted', async (t) => {
  const app = await buildApp(t)
  const policyId = await createPolicy(app, chatRules)
  const { id: keyId, apiKey } = await createKey(app, { policyId })
  t.equal((await app.inject({ url: `/v1/keys/${keyId}`, headers: adminHeaders })).json().policyId, policyId)
  const principal = await app.authenticateToken(await mintToken(app, apiKey), '127.0.0.1')
  t.equal(principal.policyId, policyId, 'the key\'s tokens carry its policy')

  assertError(t, await app.inject({ method: 'DELETE', url: `/v1/policies/${policyId}`, headers: adminHeaders }), 409, 'CONFLICT', 'delete while in use')
  const still = await app.inject({ url: `/v1/policies/${policyId}`, headers: adminHeaders })
  t.equal(still.statusCode, 200, 'the policy still exists')
  t.ok(can(app.policies.compiled(policyId), alice, 'subscribe', '/chat', 'lobby'), 'and is still in force')

  // A revoked key still references it: still in use.
  await app.inject({ method: 'POST', url: `/v1/keys/${keyId}/revoke`, headers: adminHeaders })
  assertError(t, await app.inject({ method: 'DELETE', url: `/v1/policies/${policyId}`, headers: adminHeaders }), 409, 'CONFLICT', 'delete while a revoked key uses it')

  const detached = await app.inject({ method: 'PATCH', url: `/v1/keys/${keyId}`, headers: adminHeaders, payload: { policyId: null } })
  t.equal(detached.statusCode, 200)
  t.equal(detached.json().policyId, null)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/policies/${policyId}`, headers: adminHeaders })).statusCode, 204, 'deletable once no key uses it')
})

t.test('PUT replaces the rules and the compiled policy follows at once', async (t) => {
  const app = await buildApp(t)
  const policyId = await createPolicy(app, chatRules)
  let compiled = app.policies.compiled(policyId)
  t.ok(can(compiled, alice, 'publish', '/chat', 'room:1', 'message'), 'publish to room:1 allowed')
  t.notOk(can(compiled, alice, 'publish', '/chat', 'room:readonly-news', 'message'), 'deny beats allow')
  t.ok(can(compiled, alice, 'subscribe', '/chat', 'user:alice'), '${sub} is the subject')
  t.notOk(can(compiled, alice, 'subscribe', '/chat', 'user:bob'))
  t.notOk(can(compiled, alice, 'connect', '/notification'))

  const rules: PolicyRule[] = [{ effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'], rooms: ['user:${sub}'] }]
  const res = await app.inject({ method: 'PUT', url: `/v1/policies/${policyId}`, headers: adminHeaders, payload: { name: 'notify-only', rules } })
  t.equal(res.statusCode, 200, res.body)
  compiled = app.policies.compiled(policyId)
  t.ok(can(compiled, alice, 'connect', '/notification'), 'the new rule is in force when PUT returns')
  t.ok(can(compiled, alice, 'subscribe', '/notification', 'user:alice'))
  t.notOk(can(compiled, alice, 'connect', '/chat'), 'the old rules are gone')
  t.notOk(can(compiled, alice, 'publish', '/chat', 'room:1', 'message'))

  t.equal((await app.inject({ method: 'DELETE', url: `/v1/policies/${policyId}`, headers: adminHeaders })).statusCode, 204)
  t.notOk(can(app.policies.compiled(policyId), alice, 'connect', '/notification'), 'a deleted policy denies everything at once')
  t.notOk(can(app.policies.compiled(null), alice, 'connect', '/chat'), 'no policy denies everything')
  t.notOk(can(app.policies.compiled(randomUUID()), alice, 'connect', '/chat'), 'an unknown policy denies everything')
})

t.test('a key naming a policy that does not exist is 400', async (t) => {
  const app = await buildApp(t)
  const missing = randomUUID()
  assertError(t, await app.inject({ method: 'POST', url: '/v1/keys', headers: adminHeaders, payload: { name: 'k', policyId: missing } }), 400, 'VALIDATION_FAILED', 'POST with an unknown policyId')
  assertError(t, await app.inject({ method: 'POST', url: '/v1/keys', headers: adminHeaders, payload: { name: 'k', policyId: 'not a policy id!' } }), 400, 'VALIDATION_FAILED', 'POST with a malformed policyId')
  const [{ n }] = await app.sql<Array<{ n: string }>>`select count(*) as n from api_keys`
  t.equal(Number(n), 0, 'no key was created')

  const { id } = await createKey(app)
  assertError(t, await app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: adminHeaders, payload: { policyId: missing } }), 400, 'VALIDATION_FAILED', 'PATCH with an unknown policyId')
  t.equal((await app.inject({ url: `/v1/keys/${id}`, headers: adminHeaders })).json().policyId, null, 'the key is unchanged')

  // A policy deleted behind the route's check is refused by the foreign key, still as a 400.
  const policyId = await createPolicy(app, [])
  await app.sql`delete from policies where id = ${policyId}`
  await t.rejects(app.keys.create({ name: 'racing', policyId }), { code: 'VALIDATION_FAILED' }, 'the store maps the foreign-key violation')
  await t.rejects(app.keys.update(id, { policyId }), { code: 'VALIDATION_FAILED' })
})

/** Rules of long room patterns holding exactly `chars` pattern characters (namespace `/chat` included). */
function rulesOfSize (chars: number): PolicyRule[] {
  const rules: PolicyRule[] = []
  let left = chars
  for (let n = 0; left > 0; n++) {
    const rule: PolicyRule = { effect: 'allow', namespace: '/chat', actions: ['subscribe'], rooms: [] }
    left -= rule.namespace.length
    for (let i = 0; i < 100 && left > 0; i++) {
      const room = `r${n}-${i}:`.padEnd(Math.min(256, left), 'x')
      rule.rooms!.push(room)
      left -= room.length
    }
    rules.push(rule)
  }
  return rules
}

t.test('a policy over the size bound is refused at create and at replace, naming the limit', async (t) => {
  // A body limit well above the policy, so that the bound (not the body limit) is what refuses it.
  const app = await buildApp(t, { BODY_LIMIT: String(4 * 1024 * 1024) })
  const atBound = rulesOfSize(MAX_POLICY_PATTERN_CHARS)
  const overBound = rulesOfSize(MAX_POLICY_PATTERN_CHARS + 1)
  t.equal(policyPatternChars(atBound), MAX_POLICY_PATTERN_CHARS, 'control: a policy exactly at the bound')
  t.equal(policyPatternChars(overBound), MAX_POLICY_PATTERN_CHARS + 1, 'control: one character over')

  const refused = await app.inject({ method: 'POST', url: '/v1/policies', headers: adminHeaders, payload: { name: 'too-big', rules: overBound } })
  assertError(t, refused, 400, 'VALIDATION_FAILED', 'create over the bound')
  t.match(refused.json().message, `at most ${MAX_POLICY_PATTERN_CHARS.toLocaleString('en')} pattern characters`, 'the message names the limit')
  t.match(refused.json().message, `this one has ${(MAX_POLICY_PATTERN_CHARS + 1).toLocaleString('en')}`, 'and the size sent')
  const [{ n }] = await app.sql<Array<{ n: string }>>`select count(*) as n from policies`
  t.equal(Number(n), 0, 'nothing was stored')

  const created = await app.inject({ method: 'POST', url: '/v1/policies', headers: adminHeaders, payload: { name: 'at-bound', rules: atBound } })
  t.equal(created.statusCode, 201, 'a policy at the bound is accepted')
  const id = created.json<{ id: string }>().id
  const lastRoom = atBound[atBound.length - 1]!.rooms!.at(-1)!
  t.ok(can(app.policies.compiled(id), alice, 'subscribe', '/chat', lastRoom), 'and in force')

  const replaced = await app.inject({ method: 'PUT', url: `/v1/policies/${id}`, headers: adminHeaders, payload: { name: 'at-bound', rules: overBound } })
  assertError(t, replaced, 400, 'VALIDATION_FAILED', 'replace over the bound')
  t.match(replaced.json().message, `at most ${MAX_POLICY_PATTERN_CHARS.toLocaleString('en')} pattern characters`)
  const kept = await app.inject({ url: `/v1/policies/${id}`, headers: adminHeaders })
  t.same(kept.json().rules, atBound, 'the stored policy is unchanged')
  t.ok(can(app.policies.compiled(id), alice, 'subscribe', '/chat', lastRoom), 'and still in force')
})
