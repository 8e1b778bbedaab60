import t from 'tap'
import fc from 'fast-check'
import { Value } from '@sinclair/typebox/value'
import { can, compilePolicy, DENY_ALL } from '../../src/policies/engine.js'
import {
  PolicyRuleSchema, PolicyRulesSchema,
  type PolicyAction, type PolicyDocument, type PolicyRule, type PolicySubject,
} from '../../src/policies/types.js'

const alice: PolicySubject = { sub: 'alice', keyId: 'key-1' }

// The example policy of SPEC §3.
const chatUser: PolicyDocument = {
  name: 'chat-user',
  rules: [
    {
      effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'],
      events: ['message', 'typing'], rooms: ['lobby', 'room:*', 'user:${sub}']
    },
    {
      effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'],
      rooms: ['user:${sub}']
    },
    { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly*'] },
  ],
}

const allowAll = (patterns: Partial<PolicyRule>) => compilePolicy({
  rules: [{ effect: 'allow', namespace: '*', actions: ['connect', 'subscribe', 'publish'], ...patterns }],
})

t.test('the SPEC example policy', async (t) => {
  const p = compilePolicy(chatUser)
  t.ok(can(p, alice, 'connect', '/chat'), 'connects to /chat')
  t.ok(can(p, alice, 'connect', '/notification'), 'connects to /notification')
  t.notOk(can(p, alice, 'connect', '/admin'), 'unknown namespace is refused')
  t.ok(can(p, alice, 'subscribe', '/chat', 'lobby'), 'joins lobby')
  t.ok(can(p, alice, 'subscribe', '/chat', 'room:42'), 'joins room:42')
  t.ok(can(p, alice, 'subscribe', '/chat', 'room:readonly-news'), 'joins a read-only room')
  t.notOk(can(p, alice, 'subscribe', '/chat', 'lobby2'), 'literal room is not a prefix')
  t.ok(can(p, alice, 'publish', '/chat', 'room:42', 'message'), 'publishes message to room:42')
  t.ok(can(p, alice, 'publish', '/chat', 'room:42', 'typing'), 'publishes typing to room:42')
  t.notOk(can(p, alice, 'publish', '/chat', 'room:42', 'delete'), 'event outside the list is refused')
  t.notOk(can(p, alice, 'publish', '/chat', 'room:readonly', 'message'), 'deny beats allow (exact prefix)')
  t.notOk(can(p, alice, 'publish', '/chat', 'room:readonly-news', 'message'), 'deny beats allow')
  t.ok(can(p, alice, 'publish', '/chat', 'room:readonl', 'message'), 'deny prefix is not over-broad')
  t.ok(can(p, alice, 'subscribe', '/notification', 'user:alice'), 'joins own user room')
  t.notOk(can(p, alice, 'subscribe', '/notification', 'user:bob'), 'not another user room')
  t.notOk(can(p, alice, 'subscribe', '/notification', 'user:alice2'), 'template is not a prefix')
  t.notOk(can(p, alice, 'publish', '/notification', 'user:alice', 'message'), 'no publish on /notification')
})

t.test('default deny', async (t) => {
  const empty = compilePolicy({ rules: [] })
  for (const action of ['connect', 'subscribe', 'publish'] as const) {
    t.notOk(can(empty, alice, action, '/chat', 'lobby', 'message'), `empty policy refuses ${action}`)
    t.notOk(can(DENY_ALL, alice, action, '/chat', 'lobby', 'message'), `DENY_ALL refuses ${action}`)
  }
  const p = allowAll({})
  t.ok(can(p, alice, 'publish', '/x', 'r', 'e'), 'control: allow-all allows')
  for (const action of ['toString', 'constructor', '__proto__', 'admin', '']) {
    t.notOk(can(p, alice, action as PolicyAction, '/x', 'r', 'e'), `unknown action ${JSON.stringify(action)} is refused`)
  }
  const onlyConnect = compilePolicy({ rules: [{ effect: 'allow', namespace: '/chat', actions: ['connect'] }] })
  t.ok(can(onlyConnect, alice, 'connect', '/chat'))
  t.notOk(can(onlyConnect, alice, 'subscribe', '/chat', 'lobby'), 'an action not listed is refused')
  t.ok(Object.isFrozen(DENY_ALL) && Object.isFrozen(DENY_ALL.publish.allow), 'DENY_ALL cannot be mutated')
})

t.test('pattern kinds', async (t) => {
  const literal = allowAll({ rooms: ['lobby'] })
  t.ok(can(literal, alice, 'subscribe', '/c', 'lobby'))
  t.notOk(can(literal, alice, 'subscribe', '/c', 'lobb'))
  t.notOk(can(literal, alice, 'subscribe', '/c', 'lobby:1'))
  t.notOk(can(literal, alice, 'subscribe', '/c', ''))

  const star = allowAll({ rooms: ['*'] })
  t.ok(can(star, alice, 'subscribe', '/c', 'anything'))
  t.ok(can(star, alice, 'subscribe', '/c', ''), '* matches the empty room')

  const prefix = allowAll({ rooms: ['room:*'] })
  t.ok(can(prefix, alice, 'subscribe', '/c', 'room:'), 'prefix matches itself')
  t.ok(can(prefix, alice, 'subscribe', '/c', 'room:a:b'))
  t.notOk(can(prefix, alice, 'subscribe', '/c', 'room'))
  t.notOk(can(prefix, alice, 'subscribe', '/c', 'xroom:a'), 'prefix is anchored at the start')

  const inner = allowAll({ rooms: ['a*b'] })
  t.ok(can(inner, alice, 'subscribe', '/c', 'a*b'), 'a * not at the end is literal')
  t.notOk(can(inner, alice, 'subscribe', '/c', 'axb'))

  const regexish = allowAll({ rooms: ['a.b', '(x)+'] })
  t.notOk(can(regexish, alice, 'subscribe', '/c', 'aXb'), 'no regex semantics')
  t.ok(can(regexish, alice, 'subscribe', '/c', '(x)+'))
})

t.test('namespace patterns', async (t) => {
  const p = compilePolicy({
    rules: [
      { effect: 'allow', namespace: '/chat', actions: ['connect'] },
      { effect: 'allow', namespace: '/team-*', actions: ['connect'] },
      { effect: 'allow', namespace: '*', actions: ['subscribe'] },
      { effect: 'allow', namespace: '/u/${sub}', actions: ['publish'] },
    ]
  })
  t.ok(can(p, alice, 'connect', '/chat'))
  t.notOk(can(p, alice, 'connect', '/chat2'))
  t.notOk(can(p, alice, 'connect', '/'))
  t.ok(can(p, alice, 'connect', '/team-'))
  t.ok(can(p, alice, 'connect', '/team-red'))
  t.notOk(can(p, alice, 'connect', '/team'))
  t.ok(can(p, alice, 'subscribe', '/anything', 'r'))
  t.ok(can(p, alice, 'publish', '/u/alice', 'r', 'e'))
  t.notOk(can(p, alice, 'publish', '/u/bob', 'r', 'e'))
})

t.test('templates', async (t) => {
  const p = allowAll({ rooms: ['user:${sub}', 'key:${keyId}:*', '${sub}@${keyId}', '${sub}'] })
  t.ok(can(p, alice, 'subscribe', '/c', 'user:alice'))
  t.notOk(can(p, alice, 'subscribe', '/c', 'user:bob'))
  t.notOk(can(p, alice, 'subscribe', '/c', 'user:'))
  t.notOk(can(p, alice, 'subscribe', '/c', 'user:${sub}'), 'the raw template is not a room name')
  t.ok(can(p, alice, 'subscribe', '/c', 'key:key-1:'), 'template then prefix')
  t.ok(can(p, alice, 'subscribe', '/c', 'key:key-1:x'))
  t.notOk(can(p, alice, 'subscribe', '/c', 'key:key-2:x'))
  t.notOk(can(p, alice, 'subscribe', '/c', 'key:key-1'), 'literal tail after the claim is required')
  t.ok(can(p, alice, 'subscribe', '/c', 'alice@key-1'), 'two claims')
  t.notOk(can(p, alice, 'subscribe', '/c', 'alice@key-1x'))
  t.ok(can(p, alice, 'subscribe', '/c', 'alice'), 'whole pattern is a claim')
  t.notOk(can(p, alice, 'subscribe', '/c', 'alicex'))

  const bob = { sub: 'bob', keyId: 'key-9' }
  t.ok(can(p, bob, 'subscribe', '/c', 'user:bob'), 'the same compiled policy serves every subject')
  t.notOk(can(p, bob, 'subscribe', '/c', 'user:alice'))

  const unknown = allowAll({ rooms: ['x:${jti}'] })
  t.ok(can(unknown, alice, 'subscribe', '/c', 'x:${jti}'), 'only sub and keyId are templates')
})

t.test('a claim containing * is matched literally', async (t) => {
  const p = allowAll({ rooms: ['user:${sub}', 'k:${keyId}'] })
  const star = { sub: '*', keyId: 'a*' }
  t.ok(can(p, star, 'subscribe', '/c', 'user:*'))
  t.notOk(can(p, star, 'subscribe', '/c', 'user:alice'), 'sub "*" is not a wildcard')
  t.notOk(can(p, star, 'subscribe', '/c', 'user:'), 'sub "*" is not an empty wildcard')
  t.ok(can(p, star, 'subscribe', '/c', 'k:a*'))
  t.notOk(can(p, star, 'subscribe', '/c', 'k:ab'), 'keyId ending in * is not a prefix')
  const ns = compilePolicy({ rules: [{ effect: 'allow', namespace: '/${sub}', actions: ['connect'] }] })
  t.notOk(can(ns, { sub: '*', keyId: 'k' }, 'connect', '/chat'), 'nor in a namespace')
  t.ok(can(ns, { sub: '*', keyId: 'k' }, 'connect', '/*'))
})

t.test('events restriction', async (t) => {
  const p = allowAll({ events: ['message', 'sys:*'] })
  t.ok(can(p, alice, 'publish', '/c', 'r', 'message'))
  t.ok(can(p, alice, 'publish', '/c', 'r', 'sys:ping'))
  t.notOk(can(p, alice, 'publish', '/c', 'r', 'messages'))
  t.notOk(can(p, alice, 'publish', '/c', 'r', 'sys'))
  t.ok(can(p, alice, 'subscribe', '/c', 'r'), 'events are not considered when no event is given')

  const deny = compilePolicy({
    rules: [
      { effect: 'allow', namespace: '*', actions: ['subscribe', 'publish'] },
      { effect: 'deny', namespace: '*', actions: ['subscribe', 'publish'], events: ['secret'], rooms: ['vault'] },
    ]
  })
  t.notOk(can(deny, alice, 'subscribe', '/c', 'vault'), 'event-restricted deny still applies to subscribe')
  t.ok(can(deny, alice, 'subscribe', '/c', 'hall'), 'but only on its rooms')
  t.notOk(can(deny, alice, 'publish', '/c', 'vault', 'secret'))
  t.ok(can(deny, alice, 'publish', '/c', 'vault', 'public'), 'a given event must match the deny')
  t.ok(can(deny, alice, 'publish', '/c', 'hall', 'secret'), 'a given room must match the deny')
})

t.test('connect ignores rooms and events', async (t) => {
  const p = compilePolicy({
    rules: [
      { effect: 'allow', namespace: '/a', actions: ['connect'], rooms: ['only'], events: ['only'] },
      { effect: 'allow', namespace: '/b', actions: ['connect'] },
      { effect: 'deny', namespace: '/b', actions: ['connect'], rooms: ['x'], events: ['y'] },
    ]
  })
  t.ok(can(p, alice, 'connect', '/a'))
  t.ok(can(p, alice, 'connect', '/a', 'other', 'other'), 'room/event passed to connect are ignored')
  t.notOk(can(p, alice, 'connect', '/b'), 'a connect deny refuses the namespace whatever its rooms')
  t.notOk(can(p, alice, 'connect', '/b', 'z', 'z'))
})

t.test('compilePolicy does not keep references to the input', async (t) => {
  const rules: PolicyRule[] = [{ effect: 'allow', namespace: '/c', actions: ['subscribe'], rooms: ['a'] }]
  const p = compilePolicy({ rules })
  rules[0]!.rooms!.push('b')
  rules[0]!.actions.push('publish')
  rules.push({ effect: 'allow', namespace: '*', actions: ['subscribe'] })
  t.notOk(can(p, alice, 'subscribe', '/c', 'b'))
  t.notOk(can(p, alice, 'publish', '/c', 'a', 'e'))
})

t.test('schemas', async (t) => {
  t.ok(Value.Check(PolicyRulesSchema, chatUser.rules), 'the SPEC example is valid')
  const ok = { effect: 'allow', namespace: '/chat', actions: ['connect'] }
  t.ok(Value.Check(PolicyRuleSchema, ok))
  t.ok(Value.Check(PolicyRuleSchema, { ...ok, namespace: '*' }))
  t.ok(Value.Check(PolicyRuleSchema, { ...ok, namespace: '/team-*' }))
  const bad: Array<[string, unknown]> = [
    ['unknown property', { ...ok, extra: 1 }],
    ['unknown effect', { ...ok, effect: 'maybe' }],
    ['unknown action', { ...ok, actions: ['delete'] }],
    ['no actions', { ...ok, actions: [] }],
    ['duplicate actions', { ...ok, actions: ['connect', 'connect'] }],
    ['namespace without /', { ...ok, namespace: 'chat' }],
    ['namespace too long', { ...ok, namespace: '/' + 'a'.repeat(128) }],
    ['inner * in namespace', { ...ok, namespace: '/a*b' }],
    ['room pattern too long', { ...ok, rooms: ['a'.repeat(257)] }],
    ['inner * in room', { ...ok, rooms: ['room:*:admin'] }],
    ['empty room pattern', { ...ok, rooms: [''] }],
    ['too many events', { ...ok, events: Array.from({ length: 101 }, (_, i) => `e${i}`) }],
    ['missing namespace', { effect: 'allow', actions: ['connect'] }],
  ]
  for (const [why, rule] of bad) t.notOk(Value.Check(PolicyRuleSchema, rule), `rejects: ${why}`)
  t.ok(Value.Check(PolicyRulesSchema, Array.from({ length: 200 }, () => ok)))
  t.notOk(Value.Check(PolicyRulesSchema, Array.from({ length: 201 }, () => ok)), 'rejects more than 200 rules')
})

// ---- properties, against a deliberately naive reference model ----

const ACTIONS: PolicyAction[] = ['connect', 'subscribe', 'publish']

/** Substitute-then-compare reading of SPEC §3, written independently of the engine. */
function refMatch (pattern: string, s: PolicySubject, value: string): boolean {
  if (pattern === '*') return true
  const isPrefix = pattern.endsWith('*')
  const body = (isPrefix ? pattern.slice(0, -1) : pattern)
    .split('${sub}').map((part) => part.split('${keyId}').join(s.keyId)).join(s.sub)
  return isPrefix ? value.startsWith(body) : value === body
}

function refRuleMatches (r: PolicyRule, s: PolicySubject, a: PolicyAction, ns: string, room?: string, event?: string) {
  if (!r.actions.includes(a) || !refMatch(r.namespace, s, ns)) return false
  if (a === 'connect') return true
  if (r.rooms && room !== undefined && !r.rooms.some((p) => refMatch(p, s, room))) return false
  if (r.events && event !== undefined && !r.events.some((p) => refMatch(p, s, event))) return false
  return true
}

const word = fc.constantFrom('a', 'b', 'ab', '*', ':', 'user:', 'room:', '')
const value = fc.array(word, { maxLength: 3 }).map((parts) => parts.join(''))
const patternArb = fc.oneof(
  fc.constant('*'),
  value,
  value.map((v) => v + '*'),
  fc.tuple(value, fc.constantFrom('${sub}', '${keyId}'), value, fc.boolean())
    .map(([a, tpl, b, star]) => a + tpl + b + (star ? '*' : ''))
)
const nsArb = fc.constantFrom('/chat', '/c', '/notification', '/')
const nsPatternArb = fc.oneof(nsArb, fc.constant('*'), fc.constant('/c*'), fc.constant('/${sub}'))
const optList = <T>(arb: fc.Arbitrary<T>) => fc.option(fc.array(arb, { minLength: 1, maxLength: 3 }), { nil: undefined })
const ruleArb: fc.Arbitrary<PolicyRule> = fc.record({
  effect: fc.constantFrom('allow' as const, 'deny' as const),
  namespace: nsPatternArb,
  actions: fc.subarray(ACTIONS, { minLength: 1 }),
  rooms: optList(patternArb),
  events: optList(patternArb),
}).map(({ rooms, events, ...r }) => ({ ...r, ...(rooms && { rooms }), ...(events && { events }) }))
const subjectArb = fc.record({ sub: value, keyId: value })
const queryArb = fc.record({
  subject: subjectArb,
  action: fc.constantFrom(...ACTIONS),
  namespace: fc.oneof(nsArb, fc.constant('/a'), fc.constant('/*')),
  room: fc.option(value, { nil: undefined }),
  event: fc.option(value, { nil: undefined }),
})
const rulesArb = fc.array(ruleArb, { maxLength: 8 })

/** A deny rule built to match the query, in one of the ways a pattern can match. */
const matchingDenyArb = (q: { action: PolicyAction; namespace: string; room?: string | undefined; event?: string | undefined }) => {
  // With no room/event in the query, a deny restricted to other rooms/events still applies.
  const around = (v: string | undefined) => v === undefined
    ? fc.constantFrom<string[] | undefined>(undefined, ['unrelated'])
    : fc.constantFrom<string[] | undefined>(undefined, ['*'], [v], [v.slice(0, 1) + '*'], ['x', v])
  return fc.record({
    namespace: fc.constantFrom('*', q.namespace, q.namespace.slice(0, 2) + '*'),
    extra: fc.subarray(ACTIONS),
    rooms: around(q.room),
    events: around(q.event),
  }).map(({ namespace, extra, rooms, events }): PolicyRule => ({
    effect: 'deny', namespace, actions: [...new Set([q.action, ...extra])],
    ...(rooms && { rooms }), ...(events && { events }),
  }))
}

t.test('property: can agrees with the reference model', async (t) => {
  fc.assert(fc.property(rulesArb, queryArb, (rules, q) => {
    const applicable = rules.filter((r) => refRuleMatches(r, q.subject, q.action, q.namespace, q.room, q.event))
    const expected = !applicable.some((r) => r.effect === 'deny') && applicable.some((r) => r.effect === 'allow')
    return can(compilePolicy({ rules }), q.subject, q.action, q.namespace, q.room, q.event) === expected
  }), { numRuns: 5000 })
  t.pass('5000 random policies and queries')
})

t.test('property: never true when no allow rule matches', async (t) => {
  fc.assert(fc.property(rulesArb, queryArb, (rules, q) => {
    const anyAllow = rules.some((r) => r.effect === 'allow' && refRuleMatches(r, q.subject, q.action, q.namespace, q.room, q.event))
    fc.pre(!anyAllow)
    return !can(compilePolicy({ rules }), q.subject, q.action, q.namespace, q.room, q.event)
  }), { numRuns: 2000 })
  // Same property with only allow rules that were made not to apply: the lone allow matches nothing else.
  fc.assert(fc.property(rulesArb, queryArb, (rules, q) => {
    const kept = rules.filter((r) => r.effect === 'deny' || !refRuleMatches(r, q.subject, q.action, q.namespace, q.room, q.event))
    return !can(compilePolicy({ rules: kept }), q.subject, q.action, q.namespace, q.room, q.event)
  }), { numRuns: 2000 })
  t.pass('no false allow')
})

t.test('property: a matching deny rule always wins', async (t) => {
  fc.assert(fc.property(
    rulesArb,
    queryArb.chain((q) => fc.tuple(fc.constant(q), matchingDenyArb(q), fc.nat())),
    ([...rules], [q, deny, at]) => {
      // Control: the built deny really matches this query (otherwise the property is vacuous).
      if (!refRuleMatches(deny, q.subject, q.action, q.namespace, q.room, q.event)) throw new Error('generator built a non-matching deny')
      // An allow for exactly this query, so without the deny the answer would be true.
      rules.push({ effect: 'allow', namespace: '*', actions: [q.action] })
      if (!rules.some((r) => r.effect === 'deny' && refRuleMatches(r, q.subject, q.action, q.namespace, q.room, q.event))) {
        if (!can(compilePolicy({ rules }), q.subject, q.action, q.namespace, q.room, q.event)) return false
      }
      rules.splice(at % (rules.length + 1), 0, deny)
      return !can(compilePolicy({ rules }), q.subject, q.action, q.namespace, q.room, q.event)
    }
  ), { numRuns: 5000 })
  t.pass('deny always wins, wherever it sits in the list')
})
