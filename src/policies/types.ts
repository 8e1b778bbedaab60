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
  { additionalProperties: false },
)

export const PolicyRulesSchema = Type.Array(PolicyRuleSchema, { maxItems: 200 })

// Keep the hand-written type and the schema in step: each must be assignable to the other.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const sameRule: Same<Static<typeof PolicyRuleSchema>, PolicyRule> = true
void sameRule
