import type { PolicyAction, PolicyRule, PolicySubject } from './types.js'

/*
 * The policy engine of SPEC §3: default deny, deny beats allow.
 *
 * `can` runs for every Socket.IO packet, so everything that does not depend on
 * the subject is worked out once in `compilePolicy`: rules are grouped by
 * action and split by effect, and each pattern becomes a small record that is
 * matched with `===` / `startsWith` — no regex, no string building. A template
 * such as `user:${sub}:*` is kept as its literal pieces and claim slots and
 * matched piece by piece against the value, so a claim is always compared
 * literally (a `*` in `sub` is not a wildcard) and nothing is allocated.
 *
 * Matching choices:
 * - A condition is only checked when the query supplies its dimension: a rule's
 *   `rooms` are ignored when no room is given, its `events` when no event is
 *   given. For deny this is the conservative reading (a deny on
 *   `events: ['x'], rooms: ['r']` still blocks `subscribe` to `r`); for allow
 *   it means a room-restricted rule also allows a room-less query, so callers
 *   must pass the room whenever the operation targets one.
 * - `connect` ignores rooms and events entirely: a deny rule listing `connect`
 *   refuses the namespace whatever its rooms say.
 * - Only `${sub}` and `${keyId}` are templates; any other `${...}` is literal.
 *   Only a trailing `*` (written in the policy, not coming from a claim) is a
 *   wildcard; any other `*` is literal.
 */

const ANY = 0
const EXACT = 1
const PREFIX = 2
const TEMPLATE = 3

const CLAIM_SUB = 0
const CLAIM_KEY_ID = 1

interface CompiledPattern {
  readonly kind: typeof ANY | typeof EXACT | typeof PREFIX | typeof TEMPLATE
  /** EXACT / PREFIX: the literal (without the trailing `*`). */
  readonly text: string
  /** TEMPLATE: literal pieces around the claims; `pieces.length === claims.length + 1`. */
  readonly pieces: readonly string[]
  readonly claims: readonly number[]
  /** TEMPLATE: whether the pattern ended in `*`. */
  readonly prefix: boolean
}

interface CompiledRule {
  readonly namespace: CompiledPattern
  /** null: the rule does not restrict this dimension (or the action ignores it). */
  readonly rooms: readonly CompiledPattern[] | null
  readonly events: readonly CompiledPattern[] | null
}

interface ActionRules {
  readonly deny: readonly CompiledRule[]
  readonly allow: readonly CompiledRule[]
}

export interface CompiledPolicy {
  readonly connect: ActionRules
  readonly subscribe: ActionRules
  readonly publish: ActionRules
}

const TEMPLATE_RE = /\$\{(sub|keyId)\}/g

function compilePattern(pattern: string): CompiledPattern {
  if (pattern === '*') return { kind: ANY, text: '', pieces: [], claims: [], prefix: true }
  const prefix = pattern.endsWith('*')
  const body = prefix ? pattern.slice(0, -1) : pattern
  const pieces: string[] = []
  const claims: number[] = []
  let last = 0
  for (const m of body.matchAll(TEMPLATE_RE)) {
    pieces.push(body.slice(last, m.index))
    claims.push(m[1] === 'sub' ? CLAIM_SUB : CLAIM_KEY_ID)
    last = m.index + m[0].length
  }
  if (claims.length === 0) {
    return { kind: prefix ? PREFIX : EXACT, text: body, pieces: [], claims: [], prefix }
  }
  pieces.push(body.slice(last))
  return { kind: TEMPLATE, text: '', pieces, claims, prefix }
}

function matchTemplate(p: CompiledPattern, subject: PolicySubject, value: string): boolean {
  const { pieces, claims } = p
  let pos = 0
  for (let i = 0; i < claims.length; i++) {
    const piece = pieces[i]!
    if (!value.startsWith(piece, pos)) return false
    pos += piece.length
    const claim = claims[i] === CLAIM_SUB ? subject.sub : subject.keyId
    if (!value.startsWith(claim, pos)) return false
    pos += claim.length
  }
  const tail = pieces[claims.length]!
  if (!value.startsWith(tail, pos)) return false
  pos += tail.length
  return p.prefix || pos === value.length
}

function matchPattern(p: CompiledPattern, subject: PolicySubject, value: string): boolean {
  switch (p.kind) {
    case ANY: return true
    case EXACT: return value === p.text
    case PREFIX: return value.startsWith(p.text)
    default: return matchTemplate(p, subject, value)
  }
}

function matchAny(patterns: readonly CompiledPattern[], subject: PolicySubject, value: string): boolean {
  for (let i = 0; i < patterns.length; i++) {
    if (matchPattern(patterns[i]!, subject, value)) return true
  }
  return false
}

function matchRule(
  rule: CompiledRule, subject: PolicySubject, namespace: string,
  room: string | undefined, event: string | undefined,
): boolean {
  if (!matchPattern(rule.namespace, subject, namespace)) return false
  if (room !== undefined && rule.rooms !== null && !matchAny(rule.rooms, subject, room)) return false
  if (event !== undefined && rule.events !== null && !matchAny(rule.events, subject, event)) return false
  return true
}

function compileActionRules(rules: readonly PolicyRule[], action: PolicyAction): ActionRules {
  const deny: CompiledRule[] = []
  const allow: CompiledRule[] = []
  const scoped = action !== 'connect'
  for (const rule of rules) {
    if (!rule.actions.includes(action)) continue
    const compiled: CompiledRule = Object.freeze({
      namespace: compilePattern(rule.namespace),
      rooms: scoped && rule.rooms ? Object.freeze(rule.rooms.map(compilePattern)) : null,
      events: scoped && rule.events ? Object.freeze(rule.events.map(compilePattern)) : null,
    })
    ;(rule.effect === 'deny' ? deny : allow).push(compiled)
  }
  return Object.freeze({ deny: Object.freeze(deny), allow: Object.freeze(allow) })
}

/** Compiles a policy once, when it is loaded; the result is immutable. */
export function compilePolicy(doc: { rules: readonly PolicyRule[] }): CompiledPolicy {
  return Object.freeze({
    connect: compileActionRules(doc.rules, 'connect'),
    subscribe: compileActionRules(doc.rules, 'subscribe'),
    publish: compileActionRules(doc.rules, 'publish'),
  })
}

/** The policy of a key that has none: every check is refused. */
export const DENY_ALL: CompiledPolicy = compilePolicy({ rules: [] })

/**
 * Whether `subject` may perform `action` on `namespace` (and `room` / `event`
 * when the operation has them). Default deny; any matching deny rule wins.
 */
export function can(
  policy: CompiledPolicy, subject: PolicySubject, action: PolicyAction,
  namespace: string, room?: string, event?: string,
): boolean {
  // A switch, not policy[action]: an unchecked action string must not reach Object.prototype.
  let rules: ActionRules
  switch (action) {
    case 'connect': rules = policy.connect; break
    case 'subscribe': rules = policy.subscribe; break
    case 'publish': rules = policy.publish; break
    default: return false
  }
  const { deny, allow } = rules
  for (let i = 0; i < deny.length; i++) {
    if (matchRule(deny[i]!, subject, namespace, room, event)) return false
  }
  for (let i = 0; i < allow.length; i++) {
    if (matchRule(allow[i]!, subject, namespace, room, event)) return true
  }
  return false
}
