import t from 'tap'
import fc from 'fast-check'
import { can, compilePolicy } from '../../src/policies/engine.js'
import {
  MAX_POLICY_PATTERN_CHARS, policyPatternChars, policySizeRefusal,
  type PolicyAction, type PolicyRule, type PolicySubject,
} from '../../src/policies/types.js'

// The engine indexes patterns (sorted texts, prefix chains, templates filed
// under their literal head, nested indexes after a claim, bit sets per rule).
// These properties hold it to a naive reading of SPEC §3 over policies built to
// reach every part of the index: shared prefixes, prefixes of prefixes, many
// heads in a row, claims that look like literals, more than one word of rules,
// code units at the ends of the range.

const ACTIONS: PolicyAction[] = ['connect', 'subscribe', 'publish']

/** Substitutes the claims, then compares: the slow, obvious reading of a pattern. */
function naiveMatch (pattern: string, s: PolicySubject, value: string): boolean {
  const prefix = pattern.endsWith('*')
  const body = prefix ? pattern.slice(0, -1) : pattern
  // split/join inserts each claim once: a claim that looks like a template stays literal.
  const text = body.split('${sub}').map((part) => part.split('${keyId}').join(s.keyId)).join(s.sub)
  return prefix ? value.startsWith(text) : value === text
}

interface Query { subject: PolicySubject, action: PolicyAction, namespace: string, room?: string | undefined, event?: string | undefined }

function naiveCan (rules: readonly PolicyRule[], q: Query): boolean {
  const applies = (r: PolicyRule): boolean => {
    if (!r.actions.includes(q.action) || !naiveMatch(r.namespace, q.subject, q.namespace)) return false
    if (q.action === 'connect') return true
    if (q.room !== undefined && r.rooms !== undefined && !r.rooms.some((p) => naiveMatch(p, q.subject, q.room!))) return false
    if (q.event !== undefined && r.events !== undefined && !r.events.some((p) => naiveMatch(p, q.subject, q.event!))) return false
    return true
  }
  const matching = rules.filter(applies)
  return !matching.some((r) => r.effect === 'deny') && matching.some((r) => r.effect === 'allow')
}

// ---- generators ----

// Few distinct code units, so that texts collide, share prefixes and extend one another;
// '*', '$', '{', '}' inside a text are literal; U+0000 and U+FFFF are the ends of the order.
const unit = fc.constantFrom('a', 'a', 'a', 'b', 'b', ':', '*', '$', '{', '}', '\u0000', '\uffff', 'é', '\ud83d')
const literal = fc.oneof(
  { weight: 4, arbitrary: fc.array(unit, { maxLength: 4 }).map((u) => u.join('')) },
  // Long runs of one letter: prefixes of prefixes, and long shared prefixes.
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('a', 'b'), fc.nat({ max: 24 }), fc.array(unit, { maxLength: 2 })).map(([c, n, tail]) => c.repeat(n) + tail.join('')) }
)
const claim = fc.constantFrom('${sub}', '${keyId}', '${sub}', '${jti}')
const pattern = fc.oneof(
  { weight: 1, arbitrary: fc.constant('*') },
  { weight: 4, arbitrary: fc.tuple(literal, fc.boolean()).map(([l, star]) => l + (star ? '*' : '')) },
  {
    weight: 4,
    arbitrary: fc.tuple(literal, fc.array(fc.tuple(claim, literal), { minLength: 1, maxLength: 3 }), fc.boolean())
      .map(([head, rest, star]) => head + rest.map(([c, l]) => c + l).join('') + (star ? '*' : '')),
  }
)
// Claims made of the same units, so they can equal, extend or contain the literals around them.
const subject: fc.Arbitrary<PolicySubject> = fc.record({
  sub: fc.oneof(literal, fc.constantFrom('${keyId}', '*', 'a*', '')),
  keyId: fc.oneof(literal, fc.constantFrom('${sub}', 'k-1')),
})

const list = (arb: fc.Arbitrary<string>): fc.Arbitrary<string[] | undefined> =>
  fc.option(fc.array(arb, { minLength: 0, maxLength: 4 }), { nil: undefined, freq: 3 })

const rule = (patternArb: fc.Arbitrary<string>): fc.Arbitrary<PolicyRule> => fc.record({
  effect: fc.constantFrom('allow' as const, 'allow' as const, 'deny' as const),
  namespace: fc.oneof(patternArb, fc.constantFrom('*', '/chat', '/c*')),
  actions: fc.subarray(ACTIONS, { minLength: 1 }),
  rooms: list(patternArb),
  events: list(patternArb),
}).map(({ rooms, events, ...r }) => ({ ...r, ...(rooms && { rooms }), ...(events && { events }) }))

/** Heads that start one another ('', 'a', 'aa'…), each followed by a claim. */
const stackedHeads = fc.tuple(fc.nat({ max: 12 }), claim, literal, fc.boolean())
  .map(([n, c, tail, star]) => 'a'.repeat(n) + c + tail + (star ? '*' : ''))
/** A ladder of heads with gaps ('aa', 'aaa', 'aaaaa'…; one claim, one tail): a claim found in the value must end a head of the ladder to count. */
const headLadder = fc.tuple(fc.uniqueArray(fc.nat({ max: 10 }), { minLength: 5, maxLength: 9 }), claim, literal, fc.boolean())
  .map(([lengths, c, tail, star]) => lengths.map((n) => 'a'.repeat(n) + c + tail + (star ? '*' : '')))
/** One head and claim, many remainders: a nested index with many texts. */
const sameHead = fc.tuple(fc.constantFrom('h', 'h:', ''), claim, literal, fc.boolean())
  .map(([head, c, rest, star]) => head + c + rest + (star ? '*' : ''))
/** Prefixes of prefixes. */
const chained = fc.tuple(fc.constantFrom('a', 'b'), fc.nat({ max: 30 }), fc.boolean()).map(([c, n, exact]) => c.repeat(n) + (exact ? '' : '*'))

const policy: fc.Arbitrary<PolicyRule[]> = fc.oneof(
  fc.array(rule(pattern), { maxLength: 12 }),
  fc.array(rule(fc.oneof(pattern, stackedHeads)), { maxLength: 12 }),
  fc.tuple(fc.array(rule(pattern), { maxLength: 6 }), headLadder, fc.constantFrom('allow' as const, 'deny' as const)).map(([rules, rooms, effect]) =>
    [...rules, { effect, namespace: '*', actions: ['subscribe', 'publish'], rooms } satisfies PolicyRule]),
  fc.array(rule(fc.oneof(sameHead, sameHead, pattern)), { maxLength: 16 }),
  fc.array(rule(fc.oneof(pattern, chained)), { maxLength: 12 }),
  // More than 30 rules: the rule sets span several words.
  fc.array(rule(fc.oneof(pattern, chained, stackedHeads)), { minLength: 29, maxLength: 70 })
)

/** Values near the policy's own patterns: substituted, then cut, extended or changed by one unit. */
function valuesNear (rules: readonly PolicyRule[], s: PolicySubject): fc.Arbitrary<string> {
  const patterns = rules.flatMap((r) => [r.namespace, ...(r.rooms ?? []), ...(r.events ?? [])])
  const random = fc.oneof(literal, fc.tuple(literal, fc.constantFrom(s.sub, s.keyId), literal).map((p) => p.join('')))
  if (patterns.length === 0) return random
  const substituted = fc.constantFrom(...patterns).map((p) => {
    const body = p.endsWith('*') ? p.slice(0, -1) : p
    return body.split('${sub}').map((part) => part.split('${keyId}').join(s.keyId)).join(s.sub)
  })
  const near = fc.tuple(substituted, fc.nat(), fc.constantFrom('cut', 'extend', 'change', 'insert', 'delete', 'same'), literal).map(([v, n, how, extra]) => {
    const i = v.length === 0 ? 0 : n % v.length
    if (how === 'cut') return v.slice(0, i)
    if (how === 'extend') return v + extra
    if (how === 'change' && v.length > 0) return v.slice(0, i) + String.fromCharCode(v.charCodeAt(i) ^ 1) + v.slice(i + 1)
    // One unit more or less somewhere: 'aa' + claim becomes 'aaa' + claim, between two heads of a ladder.
    if (how === 'insert') return v.slice(0, i) + (v[i] ?? 'a') + v.slice(i)
    if (how === 'delete') return v.slice(0, i) + v.slice(i + 1)
    return v
  })
  return fc.oneof({ weight: 4, arbitrary: near }, { weight: 1, arbitrary: random })
}

const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined, freq: 4 })

const scenario = policy.chain((rules) => subject.chain((s) => {
  const values = valuesNear(rules, s)
  const query: fc.Arbitrary<Query> = fc.record({
    subject: fc.constant(s),
    action: fc.constantFrom(...ACTIONS),
    namespace: fc.oneof(values, fc.constantFrom('/chat', '/c', '')),
    room: optional(values),
    event: optional(values),
  })
  return fc.tuple(fc.constant(rules), fc.array(query, { minLength: 1, maxLength: 12 }))
}))

t.test('property: the indexed can agrees with the naive reading over adversarial policies', async (t) => {
  let allowed = 0
  let checks = 0
  fc.assert(fc.property(scenario, ([rules, queries]) => {
    const compiled = compilePolicy({ rules })
    for (const q of queries) {
      const expected = naiveCan(rules, q)
      if (can(compiled, q.subject, q.action, q.namespace, q.room, q.event) !== expected) return false
      checks++
      if (expected) allowed++
    }
    return true
  }), { numRuns: 3000 })
  // Control: the generators reach both answers, often (a property that only ever saw "false" would prove little).
  t.ok(allowed > checks / 20 && allowed < checks * 0.95, `${allowed} of ${checks} checks allowed`)
})

t.test('property: one compiled policy serves every subject', async (t) => {
  fc.assert(fc.property(policy, fc.array(subject, { minLength: 2, maxLength: 4 }), fc.array(literal, { minLength: 1, maxLength: 4 }), (rules, subjects, rooms) => {
    const compiled = compilePolicy({ rules })
    for (const s of subjects) {
      for (const room of [...rooms, `${room0(rooms)}${s.sub}`, `${s.keyId}${room0(rooms)}`]) {
        const q: Query = { subject: s, action: 'subscribe', namespace: '/chat', room }
        if (can(compiled, s, 'subscribe', '/chat', room) !== naiveCan(rules, q)) return false
      }
    }
    return true
  }), { numRuns: 1000 })
  t.pass('subjects checked in turn against one compiled policy')
})
const room0 = (rooms: string[]): string => rooms[0] ?? ''

t.test('examples the generators might take long to find', async (t) => {
  const allow = (rooms: string[]): PolicyRule[] => [{ effect: 'allow', namespace: '*', actions: ['subscribe'], rooms }]
  const cases: Array<[string, string[], PolicySubject, string, boolean]> = [
    ['the heads a, aa, … aaaaaa each followed by ${sub}', Array.from({ length: 7 }, (_, n) => `${'a'.repeat(n)}\${sub}!`), { sub: 'b', keyId: 'k' }, 'aaaab!', true],
    ['… the same where the claim occurs too early', Array.from({ length: 7 }, (_, n) => `${'a'.repeat(n)}\${sub}!`), { sub: 'b', keyId: 'k' }, 'aaaabb!', false],
    ['… and a claim that is itself the head\'s letter', Array.from({ length: 7 }, (_, n) => `${'a'.repeat(n)}\${sub}b`), { sub: 'a', keyId: 'k' }, 'aaaaaaab', true],
    ['an empty claim after many heads', Array.from({ length: 7 }, (_, n) => `${'a'.repeat(n)}\${keyId}b`), { sub: 's', keyId: '' }, 'aaab', true],
    ['a prefix of a prefix, the shorter matching', ['ab*', 'abc*', 'abcd*'], { sub: 's', keyId: 'k' }, 'abcx', true],
    ['the longest prefix just missing', ['ab*', 'abc*', 'abcd*'], { sub: 's', keyId: 'k' }, 'aX', false],
    ['a value above every text', ['a', 'b*'], { sub: 's', keyId: 'k' }, '\uffff', false],
    ['a prefix ending in U+FFFF', ['a\uffff*'], { sub: 's', keyId: 'k' }, 'a\uffff\uffffz', true],
    ['U+FFFF alone', ['\uffff*'], { sub: 's', keyId: 'k' }, '\uffff', true],
    ['two claims back to back', ['${sub}${keyId}'], { sub: 'ab', keyId: 'cd' }, 'abcd', true],
    ['… not in the other order', ['${sub}${keyId}'], { sub: 'ab', keyId: 'cd' }, 'cdab', false],
    ['remainders sharing a long prefix after the claim', ['u:${sub}:' + 'x'.repeat(40) + '1', 'u:${sub}:' + 'x'.repeat(40) + '2*'], { sub: 'me', keyId: 'k' }, 'u:me:' + 'x'.repeat(40) + '2z', true],
    // The search over the remainders has met 'aab' (sharing 3 with the value) before 'aac', which shares 2.
    ['a remainder between two that share more and less with the value', ['h${sub}', 'h${sub}a', 'h${sub}aab', 'h${sub}aac*', 'h${sub}b'], { sub: 'me', keyId: 'k' }, 'hmeaabz', false],
    ['… the value that does match', ['h${sub}', 'h${sub}a', 'h${sub}aab', 'h${sub}aac*', 'h${sub}b'], { sub: 'me', keyId: 'k' }, 'hmeaacz', true],
    ['… and a remainder missing the shared part', ['u:${sub}:' + 'x'.repeat(40) + '1', 'u:${sub}:' + 'x'.repeat(40) + '2*'], { sub: 'me', keyId: 'k' }, 'u:me:' + 'x'.repeat(39) + 'y2', false],
  ]
  for (const [why, rooms, s, room, expected] of cases) {
    const rules = allow(rooms)
    t.equal(naiveCan(rules, { subject: s, action: 'subscribe', namespace: '/c', room }), expected, `control: ${why}`)
    t.equal(can(compilePolicy({ rules }), s, 'subscribe', '/c', room), expected, why)
  }

  // Rule 45 of 60 (second word of the rule set) is the only one matching both dimensions.
  const rules: PolicyRule[] = Array.from({ length: 60 }, (_, n) => ({
    effect: 'allow', namespace: '*', actions: ['publish'], rooms: [`r${n}`], events: [n === 45 ? 'e45' : `e${(n + 1) % 60}`],
  }))
  const wide = compilePolicy({ rules })
  const s = { sub: 's', keyId: 'k' }
  t.ok(can(wide, s, 'publish', '/c', 'r45', 'e45'), 'a rule past the first 30 matches')
  t.notOk(can(wide, s, 'publish', '/c', 'r45', 'e46'), 'each rule is a conjunction: room of one rule, event of another is no match')
  rules.push({ effect: 'deny', namespace: '*', actions: ['publish'], events: ['e45'] })
  t.notOk(can(compilePolicy({ rules }), s, 'publish', '/c', 'r45', 'e45'), 'a deny in the third word wins')
})

t.test('the size bound', async (t) => {
  const rule = (namespace: string, rooms?: string[], events?: string[]): PolicyRule =>
    ({ effect: 'allow', namespace, actions: ['subscribe'], ...(rooms && { rooms }), ...(events && { events }) })
  t.equal(policyPatternChars([]), 0)
  t.equal(policyPatternChars([rule('/chat'), rule('*', ['lobby', 'user:${sub}'], ['message'])]), 5 + 1 + 5 + 11 + 7, 'namespaces, rooms and events, as written')

  const at = [rule('*', ['x'.repeat(MAX_POLICY_PATTERN_CHARS - 1)])]
  t.equal(policyPatternChars(at), MAX_POLICY_PATTERN_CHARS)
  t.equal(policySizeRefusal(at), undefined, 'a policy at the bound is accepted')
  const over = [...at, rule('/')]
  const message = policySizeRefusal(over)
  t.match(message, new RegExp(`at most ${MAX_POLICY_PATTERN_CHARS.toLocaleString('en')} pattern characters`), 'the refusal names the limit')
  t.match(message, new RegExp(`this one has ${(MAX_POLICY_PATTERN_CHARS + 1).toLocaleString('en')}`), 'and the policy\'s size')
})
