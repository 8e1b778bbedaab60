import { Type, type Static } from '@sinclair/typebox'

export type PolicyAction = 'connect' | 'subscribe' | 'publish'

/**
 * One rule of a policy (SPEC §3). `namespace`, `rooms` and `events` hold
 * patterns: a literal, `*`, or a prefix ending in `*`; `${sub}` and `${keyId}`
 * are replaced by the subject's claims, matched literally.
 */
export type PolicyRule = {
  effect: 'allow' | 'deny'
  namespace: string
  actions: PolicyAction[]
  events?: string[]
  rooms?: string[]
}

export type PolicyDocument = { name: string; rules: PolicyRule[] }

/** The token claims a policy's `${sub}` / `${keyId}` templates refer to. */
export type PolicySubject = { sub: string; keyId: string }

// `*` only as the last character: the engine would read an inner `*` as a
// literal, which a policy author writing `room:*:admin` would not expect.
const PATTERN = '^[^*]*\\*?$'

const PatternSchema = Type.String({ minLength: 1, maxLength: 256, pattern: PATTERN })

export const PolicyActionSchema = Type.Union([
  Type.Literal('connect'),
  Type.Literal('subscribe'),
  Type.Literal('publish'),
])

export const PolicyRuleSchema = Type.Object(
  {
    effect: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
    namespace: Type.String({ minLength: 1, maxLength: 128, pattern: '^(\\*|/[^*]*\\*?)$' }),
    actions: Type.Array(PolicyActionSchema, { minItems: 1, maxItems: 3, uniqueItems: true }),
    events: Type.Optional(Type.Array(PatternSchema, { minItems: 1, maxItems: 100 })),
    rooms: Type.Optional(Type.Array(PatternSchema, { minItems: 1, maxItems: 100 })),
  },
  { additionalProperties: false }
)

export const PolicyRulesSchema = Type.Array(PolicyRuleSchema, { maxItems: 200 })

/**
 * The most pattern characters (namespaces, rooms and events of all rules, as
 * written) a policy may hold. Hundreds of rules with short patterns fit many
 * times over (200 rules of 10 patterns of 30 characters is 60,000), as does any
 * policy sent within the default 64 KB BODY_LIMIT; the schema alone allows
 * 200 × 200 × 256, over 10 million. Checks hardly grow with a policy's size
 * (the engine indexes it); compiling does, on every instance at every change
 * and reload: this keeps it to a few milliseconds (bench/policy.ts).
 */
export const MAX_POLICY_PATTERN_CHARS = 65_536

/** The size `MAX_POLICY_PATTERN_CHARS` bounds: every pattern's length, summed over the rules. */
export function policyPatternChars (rules: readonly PolicyRule[]): number {
  let total = 0
  for (const rule of rules) {
    total += rule.namespace.length
    for (const pattern of rule.rooms ?? []) total += pattern.length
    for (const pattern of rule.events ?? []) total += pattern.length
  }
  return total
}

/** Why a policy is too big to accept, or undefined when it fits. */
export function policySizeRefusal (rules: readonly PolicyRule[]): string | undefined {
  const chars = policyPatternChars(rules)
  if (chars <= MAX_POLICY_PATTERN_CHARS) return undefined
  return `body/rules: a policy may hold at most ${MAX_POLICY_PATTERN_CHARS.toLocaleString('en')} pattern characters ` +
    `(namespaces, rooms and events of all rules); this one has ${chars.toLocaleString('en')}`
}

// Keep the hand-written type and the schema in step: each must be assignable to the other.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const sameRule: Same<Static<typeof PolicyRuleSchema>, PolicyRule> = true
void sameRule
