import type { PolicyAction, PolicyRule, PolicySubject } from './types.js'

/*
 * The policy engine of SPEC §3: default deny, deny beats allow.
 *
 * `can` runs for every Socket.IO packet, so everything that does not depend on
 * the subject is worked out once in `compilePolicy`, and a check costs about
 * the same whatever the policy's size. For each action the rules listing it
 * are numbered, and each dimension (namespace, rooms, events) gets one index
 * over the patterns of all those rules, which answers "which rules have a
 * pattern matching this value" as a bit set. A check ANDs the namespace, room
 * and event sets (a rule is a conjunction of the three), then looks for a
 * deny bit, then an allow bit. No regex, no string building, nothing allocated.
 *
 * An index holds the distinct pattern texts, sorted (`*` is the prefix "").
 * A binary search finds the greatest text ≤ the value: the value itself when
 * an exact pattern matches; and the prefix patterns that match are those of
 * its chain (the prefix texts it starts with) short enough to start the value
 * too: a second binary search, each chain entry holding the rules of all the
 * prefixes it extends. A template such as `user:${sub}:*` is filed the same way
 * under its literal head (`user:`); where the value goes on with the claim
 * (compared literally: a `*` in `sub` is not a wildcard), the remainder (`:*`)
 * is matched from there in a nested index of the same kind. So a check is a few
 * binary searches over the value, however many rules there are and however
 * much their patterns share; MAX_POLICY_PATTERN_CHARS (types.ts) bounds what a
 * compile costs.
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

const CLAIM_SUB = 0
const CLAIM_KEY_ID = 1

// 30 bits a word: the words stay small integers (Smis), so plain arrays of them stay fast.
const WORD_BITS = 30

/** A set of rules (by their number within one action), WORD_BITS to a word. */
type RuleBits = readonly number[]

interface IndexEntry {
  readonly text: string
  /**
   * The least string above every string that starts with `text` (its last code
   * unit raised by one, trailing U+FFFF dropped), null when there is none:
   * with `text` ≤ v, `text` is a prefix of v exactly when v < `above`.
   */
  readonly above: string | null
  /** Rules with `text` as an exact pattern. */
  readonly exact: RuleBits | null
  /** On prefix entries: the rules with a prefix pattern that is `text` or a prefix of it. */
  readonly covered: RuleBits | null
  /** The prefix entries whose text is a prefix of this one's (this one included), longest first. */
  readonly prefixes: readonly number[]
  /** The same for template heads. */
  readonly heads: readonly number[]
  /** Templates `text${sub}…` / `text${keyId}…`: their remainders, matched after the claim. */
  readonly afterSub: PatternIndex | null
  readonly afterKeyId: PatternIndex | null
}

interface PatternIndex {
  /** Sorted by UTF-16 code units, as `<` compares. */
  readonly texts: readonly string[]
  readonly entries: readonly IndexEntry[]
  /** The prefix every text shares (a remainder that lacks it matches nothing here). */
  readonly shared: string
  /** Whether some text heads `${sub}` / `${keyId}` templates. */
  readonly subHeads: boolean
  readonly keyIdHeads: boolean
}

/** The rules of one action, indexed by dimension. */
interface ActionIndex {
  readonly words: number
  /** Rule numbers of deny and allow rules. */
  readonly deny: RuleBits
  readonly allow: RuleBits
  readonly namespace: PatternIndex
  /** null: no rule of this action restricts the dimension, or the action ignores it. */
  readonly rooms: PatternIndex | null
  readonly events: PatternIndex | null
  /** Rules without a room (event) list: they match any room (event). */
  readonly anyRoom: RuleBits
  readonly anyEvent: RuleBits
  /**
   * Work space for one check (two rule sets): `can` is synchronous, so one per
   * action is enough, and a check allocates nothing.
   */
  readonly scratch: Int32Array
}

export interface CompiledPolicy {
  readonly connect: ActionIndex
  readonly subscribe: ActionIndex
  readonly publish: ActionIndex
}

// ---- compiling ----

const TEMPLATE_RE = /\$\{(sub|keyId)\}/g
const NONE: readonly number[] = []

/** A pattern cut at its claims: `pieces.length === claims.length + 1`. */
interface ParsedPattern {
  readonly pieces: readonly string[]
  readonly claims: readonly number[]
  /** Whether the pattern ended in `*` (`*` alone is the prefix ""). */
  readonly prefix: boolean
}

/** A pattern of rule number `rule` (within its action). */
interface PatternSource { readonly pattern: ParsedPattern, readonly rule: number }

function parsePattern (pattern: string): ParsedPattern {
  const prefix = pattern.endsWith('*')
  const body = prefix ? pattern.slice(0, -1) : pattern
  if (!body.includes('${')) return { pieces: [body], claims: NONE, prefix }
  const pieces: string[] = []
  const claims: number[] = []
  let last = 0
  for (const m of body.matchAll(TEMPLATE_RE)) {
    pieces.push(body.slice(last, m.index))
    claims.push(m[1] === 'sub' ? CLAIM_SUB : CLAIM_KEY_ID)
    last = m.index + m[0].length
  }
  pieces.push(body.slice(last))
  return { pieces, claims, prefix }
}

function aboveAll (text: string): string | null {
  let end = text.length
  while (end > 0 && text.charCodeAt(end - 1) === 0xffff) end--
  if (end === 0) return null
  return text.slice(0, end - 1) + String.fromCharCode(text.charCodeAt(end - 1) + 1)
}

const emptyBits = (words: number): number[] => new Array<number>(words).fill(0)

function addRule (bits: number[], rule: number): void {
  bits[Math.floor(rule / WORD_BITS)]! |= 1 << (rule % WORD_BITS)
}

interface EntryDraft {
  exact: number[] | null
  prefix: number[] | null
  afterSub: PatternSource[] | null
  afterKeyId: PatternSource[] | null
}

/** Indexes `sources` by their piece number `depth` (the part after `depth` claims). */
function buildIndex (sources: readonly PatternSource[], depth: number, words: number): PatternIndex {
  const drafts = new Map<string, EntryDraft>()
  for (const source of sources) {
    const { pieces, claims, prefix } = source.pattern
    const text = pieces[depth]!
    let draft = drafts.get(text)
    if (draft === undefined) {
      draft = { exact: null, prefix: null, afterSub: null, afterKeyId: null }
      drafts.set(text, draft)
    }
    if (depth === claims.length) {
      if (prefix) addRule(draft.prefix ??= emptyBits(words), source.rule)
      else addRule(draft.exact ??= emptyBits(words), source.rule)
    } else if (claims[depth] === CLAIM_SUB) {
      (draft.afterSub ??= []).push(source)
    } else {
      (draft.afterKeyId ??= []).push(source)
    }
  }

  const texts = [...drafts.keys()].sort()
  const entries: IndexEntry[] = []
  // Sorted order visits a text right after the texts it extends: stacks of the open prefix entries and heads suffice.
  const openPrefixes: Array<{ text: string, prefixes: readonly number[], covered: RuleBits }> = []
  const openHeads: Array<{ text: string, heads: readonly number[] }> = []
  for (const text of texts) {
    const draft = drafts.get(text)!
    while (openPrefixes.length > 0 && !text.startsWith(openPrefixes[openPrefixes.length - 1]!.text)) openPrefixes.pop()
    while (openHeads.length > 0 && !text.startsWith(openHeads[openHeads.length - 1]!.text)) openHeads.pop()
    const prefixParent = openPrefixes[openPrefixes.length - 1]
    const headParent = openHeads[openHeads.length - 1]
    let prefixes = prefixParent?.prefixes ?? NONE
    let heads = headParent?.heads ?? NONE
    const covered = draft.prefix
    if (covered !== null) {
      if (prefixParent !== undefined) for (let w = 0; w < words; w++) covered[w]! |= prefixParent.covered[w]!
      prefixes = [entries.length, ...prefixes]
      openPrefixes.push({ text, prefixes, covered })
    }
    const isHead = draft.afterSub !== null || draft.afterKeyId !== null
    if (isHead) {
      heads = [entries.length, ...heads]
      openHeads.push({ text, heads })
    }
    entries.push({
      text,
      // Only read for chain entries (prefixes and heads).
      above: covered !== null || isHead ? aboveAll(text) : null,
      exact: draft.exact,
      covered,
      prefixes,
      heads,
      afterSub: draft.afterSub === null ? null : buildIndex(draft.afterSub, depth + 1, words),
      afterKeyId: draft.afterKeyId === null ? null : buildIndex(draft.afterKeyId, depth + 1, words),
    })
  }
  const first = texts[0] ?? ''
  const last = texts[texts.length - 1] ?? ''
  let shared = 0
  while (shared < first.length && shared < last.length && first.charCodeAt(shared) === last.charCodeAt(shared)) shared++
  return {
    texts,
    entries,
    shared: first.slice(0, shared),
    subHeads: entries.some((e) => e.afterSub !== null),
    keyIdHeads: entries.some((e) => e.afterKeyId !== null),
  }
}

function compileActionIndex (
  rules: readonly PolicyRule[], action: PolicyAction, parsed: (pattern: string) => ParsedPattern,
  namespaceIndex?: PatternIndex
): ActionIndex {
  const own = rules.filter((rule) => rule.actions.includes(action))
  const words = Math.ceil(own.length / WORD_BITS)
  const deny = emptyBits(words)
  const allow = emptyBits(words)
  const anyRoom = emptyBits(words)
  const anyEvent = emptyBits(words)
  const namespaces: PatternSource[] = []
  const rooms: PatternSource[] = []
  const events: PatternSource[] = []
  const scoped = action !== 'connect'
  own.forEach((rule, n) => {
    addRule(rule.effect === 'deny' ? deny : allow, n)
    namespaces.push({ pattern: parsed(rule.namespace), rule: n })
    if (scoped && rule.rooms) for (const p of rule.rooms) rooms.push({ pattern: parsed(p), rule: n })
    else addRule(anyRoom, n)
    if (scoped && rule.events) for (const p of rule.events) events.push({ pattern: parsed(p), rule: n })
    else addRule(anyEvent, n)
  })
  return Object.freeze({
    words,
    deny: Object.freeze(deny),
    allow: Object.freeze(allow),
    namespace: namespaceIndex ?? buildIndex(namespaces, 0, words),
    // A rule with an empty list matches no room; it still needs an (empty) index to say so.
    rooms: scoped && own.some((r) => r.rooms !== undefined) ? buildIndex(rooms, 0, words) : null,
    events: scoped && own.some((r) => r.events !== undefined) ? buildIndex(events, 0, words) : null,
    anyRoom,
    anyEvent,
    scratch: new Int32Array(2 * words),
  })
}

/**
 * Compiles a policy once, when it is loaded. The result is not changed after
 * (its inner arrays are left unfrozen only because frozen ones are slower to
 * read; the engine never writes them, and nothing outside it can name them).
 */
export function compilePolicy (doc: { rules: readonly PolicyRule[] }): CompiledPolicy {
  const cache = new Map<string, ParsedPattern>()
  const parsed = (pattern: string): ParsedPattern => {
    let p = cache.get(pattern)
    if (p === undefined) { p = parsePattern(pattern); cache.set(pattern, p) }
    return p
  }
  // Most rules list subscribe and publish together (and often connect): the same rules, numbered alike, share one index.
  const sameRules = (a: PolicyAction, b: PolicyAction): boolean => doc.rules.every((r) => r.actions.includes(a) === r.actions.includes(b))
  const subscribe = compileActionIndex(doc.rules, 'subscribe', parsed)
  return Object.freeze({
    connect: compileActionIndex(doc.rules, 'connect', parsed, sameRules('connect', 'subscribe') ? subscribe.namespace : undefined),
    subscribe,
    publish: sameRules('publish', 'subscribe') ? subscribe : compileActionIndex(doc.rules, 'publish', parsed),
  })
}

/** The policy of a key that has none: every check is refused. */
export const DENY_ALL: CompiledPolicy = compilePolicy({ rules: [] })

// ---- checking ----

function orInto (out: Int32Array, at: number, bits: RuleBits): void {
  for (let w = 0; w < bits.length; w++) out[at + w]! |= bits[w]!
}

/**
 * ORs into `out[at…]` the rules with a pattern of `index` matching all of
 * `value` (a top-level index: native string comparisons, which are fast).
 */
function matchValue (index: PatternIndex, subject: PolicySubject, value: string, out: Int32Array, at: number): void {
  const { texts, entries } = index
  let lo = 0
  let hi = texts.length - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (texts[mid]! <= value) { found = mid; lo = mid + 1 } else hi = mid - 1
  }
  if (found < 0) return
  const entry = entries[found]!
  if (entry.exact !== null && entry.text === value) orInto(out, at, entry.exact)
  const { prefixes, heads } = entry
  if (prefixes.length > 0) {
    const longest = longestPrefixOf(entries, prefixes, value)
    if (longest < prefixes.length) orInto(out, at, entries[prefixes[longest]!]!.covered!)
  }
  if (heads.length > 0) {
    const first = longestPrefixOf(entries, heads, value)
    if (first < heads.length) matchHeads(index, heads, first, subject, value, 0, out, at)
  }
}

/**
 * The first of `chain` (texts ≤ value, each a prefix of the one before) that
 * is a prefix of `value`; the rest are too. chain.length when none is.
 */
function longestPrefixOf (entries: readonly IndexEntry[], chain: readonly number[], value: string): number {
  let first = 0
  let last = chain.length
  while (first < last) {
    const mid = (first + last) >>> 1
    const above = entries[chain[mid]!]!.above
    if (above === null || value < above) last = mid; else first = mid + 1
  }
  return first
}

/**
 * Matches the templates filed under `heads[first…]` (texts that start `value`
 * at `pos`, longest first): where the value goes on with a head's claim, the
 * remainder after it. The claim's occurrences are found by native search, so
 * a long run of heads ('a', 'aa', 'aaa'…) costs no more than one.
 */
function matchHeads (
  index: PatternIndex, heads: readonly number[], first: number,
  subject: PolicySubject, value: string, pos: number, out: Int32Array, at: number
): void {
  if (index.subHeads) matchAfterClaim(index.entries, heads, first, CLAIM_SUB, subject, value, pos, out, at)
  if (index.keyIdHeads) matchAfterClaim(index.entries, heads, first, CLAIM_KEY_ID, subject, value, pos, out, at)
}

function matchAfterClaim (
  entries: readonly IndexEntry[], heads: readonly number[], first: number, kind: number,
  subject: PolicySubject, value: string, pos: number, out: Int32Array, at: number
): void {
  const claim = kind === CLAIM_SUB ? subject.sub : subject.keyId
  const end = pos + entries[heads[first]!]!.text.length
  // (indexOf clamps its start to the length: an empty claim would be found at the end forever.)
  for (let q = value.indexOf(claim, pos); q >= 0 && q <= end; q = q === value.length ? -1 : value.indexOf(claim, q + 1)) {
    // The head ending at q, if any: a binary search on the lengths, which fall along the chain.
    let lo = first
    let hi = heads.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (entries[heads[mid]!]!.text.length <= q - pos) hi = mid; else lo = mid + 1
    }
    const head = entries[heads[lo]!]!
    if (head.text.length !== q - pos) continue
    const after = kind === CLAIM_SUB ? head.afterSub : head.afterKeyId
    if (after !== null) matchFrom(after, subject, value, q + claim.length, out, at)
  }
}

/**
 * `matchValue` for `value` from `pos` on (a remainder after a claim), without
 * taking a substring: compared code unit by code unit, each comparison in the
 * binary search starting past what both bounds already share with the
 * remainder (at least the prefix all texts share).
 */
function matchFrom (index: PatternIndex, subject: PolicySubject, value: string, pos: number, out: Int32Array, at: number): void {
  const { texts, entries, shared } = index
  const rest = value.length - pos
  if (shared.length > rest) return
  for (let k = 0; k < shared.length; k++) {
    if (shared.charCodeAt(k) !== value.charCodeAt(pos + k)) return
  }
  let lo = -1
  let hi = texts.length
  let sharedLo = shared.length
  let sharedHi = shared.length
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1
    const text = texts[mid]!
    const end = text.length < rest ? text.length : rest
    let k = sharedLo < sharedHi ? sharedLo : sharedHi
    while (k < end && text.charCodeAt(k) === value.charCodeAt(pos + k)) k++
    if (k === text.length || (k < rest && text.charCodeAt(k) < value.charCodeAt(pos + k))) {
      lo = mid; sharedLo = k
    } else {
      hi = mid; sharedHi = k
    }
  }
  if (lo < 0) return
  const entry = entries[lo]!
  // sharedLo: how much of the entry's text the remainder starts with.
  if (entry.exact !== null && sharedLo === entry.text.length && rest === sharedLo) orInto(out, at, entry.exact)
  const { prefixes, heads } = entry
  if (prefixes.length > 0) {
    const longest = longestWithin(entries, prefixes, sharedLo)
    if (longest < prefixes.length) orInto(out, at, entries[prefixes[longest]!]!.covered!)
  }
  if (heads.length > 0) {
    const first = longestWithin(entries, heads, sharedLo)
    if (first < heads.length) matchHeads(index, heads, first, subject, value, pos, out, at)
  }
}

/** The first of `chain` (each text a prefix of the one before) no longer than `length`. */
function longestWithin (entries: readonly IndexEntry[], chain: readonly number[], length: number): number {
  let first = 0
  let last = chain.length
  while (first < last) {
    const mid = (first + last) >>> 1
    if (entries[chain[mid]!]!.text.length <= length) last = mid; else first = mid + 1
  }
  return first
}

// A switch, not policy[action]: an unchecked action string must not reach Object.prototype.
function actionIndex (policy: CompiledPolicy, action: PolicyAction): ActionIndex | undefined {
  switch (action) {
    case 'connect': return policy.connect
    case 'subscribe': return policy.subscribe
    case 'publish': return policy.publish
    default: return undefined
  }
}

/**
 * Whether `subject` may perform `action` on `namespace` (and `room` / `event`
 * when the operation has them). Default deny; any matching deny rule wins.
 */
export function can (
  policy: CompiledPolicy, subject: PolicySubject, action: PolicyAction,
  namespace: string, room?: string, event?: string
): boolean {
  const index = actionIndex(policy, action)
  if (index === undefined || index.words === 0) return false
  const { words, scratch, rooms, events } = index
  // scratch[0, words): the rules matching so far; scratch[words, 2·words): those matching the dimension at hand.
  for (let w = 0; w < words; w++) scratch[w] = 0
  matchValue(index.namespace, subject, namespace, scratch, 0)
  if (!anyBit(scratch, words)) return false
  if (room !== undefined && rooms !== null && !narrow(index, rooms, index.anyRoom, subject, room)) return false
  if (event !== undefined && events !== null && !narrow(index, events, index.anyEvent, subject, event)) return false
  const { deny, allow } = index
  let allowed = 0
  for (let w = 0; w < words; w++) {
    if ((scratch[w]! & deny[w]!) !== 0) return false
    allowed |= scratch[w]! & allow[w]!
  }
  return allowed !== 0
}

function anyBit (scratch: Int32Array, words: number): boolean {
  let bits = 0
  for (let w = 0; w < words; w++) bits |= scratch[w]!
  return bits !== 0
}

/** Keeps, of the rules matching so far, those whose list of this dimension matches `value` (or who have none); false when none is left. */
function narrow (index: ActionIndex, patterns: PatternIndex, unrestricted: RuleBits, subject: PolicySubject, value: string): boolean {
  const { words, scratch } = index
  let restricted = 0
  for (let w = 0; w < words; w++) {
    restricted |= scratch[w]! & ~unrestricted[w]!
    scratch[words + w] = unrestricted[w]!
  }
  // Every rule still in the running takes any value here: nothing to look up.
  if (restricted === 0) return true
  matchValue(patterns, subject, value, scratch, words)
  let left = 0
  for (let w = 0; w < words; w++) left |= (scratch[w] = scratch[w]! & scratch[words + w]!)
  return left !== 0
}
