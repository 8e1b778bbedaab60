import { hash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'

/** API keys are `spk_<keyId>_<secret>` (SPEC §3). */
export const KEY_PREFIX = 'spk_'
// Key ids and policy ids share this form (both are generated UUIDs); anything else in a path is NOT_FOUND.
export const KEY_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/
// A credential longer than this is refused without hashing more than a fixed amount of it.
const MAX_KEY_LENGTH = 512

export interface ParsedApiKey { id: string, secret: string }

export interface GeneratedApiKey extends ParsedApiKey {
  /** The full key, shown once to its owner. */
  apiKey: string
  secretHash: Buffer
}

export function hashSecret (secret: string): Buffer {
  // The one-shot hash: a Hash object per call cost more than the digest itself (every key attempt runs this).
  return hash('sha256', secret, 'buffer')
}

// Compared against when the presented key is malformed or its id unknown, so every refusal costs the same.
const DECOY_HASH = hashSecret(randomBytes(32).toString('base64url'))

export function newSecret (): { secret: string, secretHash: Buffer } {
  const secret = randomBytes(32).toString('base64url')
  return { secret, secretHash: hashSecret(secret) }
}

/** The one key format of SPEC §3: `spk_<keyId>_<secret>`. */
export function formatApiKey (id: string, secret: string): string {
  return `${KEY_PREFIX}${id}_${secret}`
}

export function generateApiKey (id: string = randomUUID()): GeneratedApiKey {
  const { secret, secretHash } = newSecret()
  return { id, secret, secretHash, apiKey: formatApiKey(id, secret) }
}

/** Splits a presented key; undefined when it cannot be one of ours. */
export function parseApiKey (raw: string): ParsedApiKey | undefined {
  if (raw.length > MAX_KEY_LENGTH || !raw.startsWith(KEY_PREFIX)) return undefined
  const end = raw.indexOf('_', KEY_PREFIX.length)
  if (end < 0) return undefined
  const id = raw.slice(KEY_PREFIX.length, end)
  const secret = raw.slice(end + 1)
  if (!KEY_ID_PATTERN.test(id) || secret.length === 0) return undefined
  return { id, secret }
}

/** Constant-time check of a secret against stored hashes; a missing hash is checked against a decoy. */
export function secretMatches (secret: string | undefined, ...hashes: Array<Buffer | null | undefined>): boolean {
  return matchingSecret(secret, ...hashes) >= 0
}

/** Which of the stored hashes the secret matches (its index), or -1; constant-time like `secretMatches`. */
export function matchingSecret (secret: string | undefined, ...hashes: Array<Buffer | null | undefined>): number {
  const presented = hashSecret(secret ?? '')
  let matched = -1
  const candidates = hashes.length > 0 ? hashes : [undefined]
  for (let i = 0; i < candidates.length; i++) {
    const hash = candidates[i]
    // Always compare, even after a match or against the decoy, so the work done does not depend on the outcome.
    const equal = timingSafeEqual(presented, hash ?? DECOY_HASH)
    matched = equal && hash !== null && hash !== undefined && matched < 0 ? i : matched
  }
  return matched
}
