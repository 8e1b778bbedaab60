import type { ApiKeyRecord } from './types.js'

/**
 * A token lives no longer than the secret that minted it (SPEC §3). Each
 * rotation starts a new generation of the key's secret; a token carries the
 * generation it was minted with, so "minted before the rotation" is a counter
 * comparison, never a clock one (`iat` has one-second resolution).
 */

/** What a token of `generation` is worth against the key's record as this instance knows it. */
export type GenerationStanding =
  | { kind: 'current' }
  /** Minted from the secret a rotation replaced: valid until `until` (ms since the epoch). */
  | { kind: 'grace', until: number }
  | { kind: 'superseded' }
  /** Newer than the record: the record is stale (a rotation made elsewhere), read it again. */
  | { kind: 'ahead' }

export function generationStanding (key: Pick<ApiKeyRecord, 'secretGeneration' | 'previousExpiresAt'>, generation: number, now = Date.now()): GenerationStanding {
  if (generation === key.secretGeneration) return { kind: 'current' }
  if (generation > key.secretGeneration) return { kind: 'ahead' }
  const until = key.previousExpiresAt?.getTime()
  if (generation === key.secretGeneration - 1 && until !== undefined && until > now) return { kind: 'grace', until }
  return { kind: 'superseded' }
}

/** Broadcast by a rotation: every instance then cuts the live sockets of the older tokens at the grace's end. */
export const KEYS_ROTATED = 'keys:rotated'

export interface RotationNotice {
  keyId: string
  /** The generation the rotation started. */
  generation: number
  /** When the previous generation stops (ms since the epoch); null: at once (no grace). */
  graceUntil: number | null
}

export function parseRotationNotice (message: string): RotationNotice | undefined {
  try {
    const notice = JSON.parse(message) as Partial<RotationNotice>
    if (typeof notice.keyId !== 'string' || !Number.isSafeInteger(notice.generation)) return undefined
    if (notice.graceUntil !== null && typeof notice.graceUntil !== 'number') return undefined
    return notice as RotationNotice
  } catch {
    return undefined
  }
}

/** Matches the principals whose tokens a rotation has stopped. */
export type SupersededTest = (principal: { keyId: string, keyGeneration?: number, via: string }) => boolean

// setTimeout holds at most ~24.8 days; a longer grace (up to 30 days) waits in steps.
const MAX_TIMER_MS = 2 ** 31 - 1
// A handshake admitted just before a cut joins its namespace after it (its checks await the stores): a second
// pass this much later catches it. Longer than the slowest admission (the key lookup gives up after 1.5 s).
const SETTLE_MS = 2000

/**
 * One timer per rotated key on each instance, at the end of its grace: then
 * `cut` hears which principals' tokens stopped. A later rotation of the same
 * key replaces the earlier timer (its cut covers the earlier generations).
 */
export class RotationCutoffs {
  private readonly pending = new Map<string, { generation: number, timer: NodeJS.Timeout }>()
  private readonly settling = new Set<NodeJS.Timeout>()

  constructor (private readonly cut: (superseded: SupersededTest) => void) {}

  /** Tokens of `keyId` older than `generation` stop at `at` (ms since the epoch; now or earlier: at once). */
  schedule (keyId: string, generation: number, at: number): void {
    const existing = this.pending.get(keyId)
    if (existing !== undefined && existing.generation >= generation) return
    if (existing !== undefined) clearTimeout(existing.timer)
    this.pending.delete(keyId)
    if (at <= Date.now()) {
      this.cutOlderThan(keyId, generation)
      return
    }
    const timer = setTimeout(() => {
      this.pending.delete(keyId)
      this.schedule(keyId, generation, at)
    }, Math.min(at - Date.now(), MAX_TIMER_MS))
    timer.unref()
    this.pending.set(keyId, { generation, timer })
  }

  /** A rotation's own notice: the generation before the previous one stops now, the previous one at the grace's end. */
  rotated ({ keyId, generation, graceUntil }: RotationNotice): void {
    const graceOpen = graceUntil !== null && graceUntil > Date.now()
    // Only the secret just replaced has a grace: any older one (a rotation during another's grace) stops now.
    if (graceOpen && generation >= 2) this.cutOlderThan(keyId, generation - 1)
    this.schedule(keyId, generation, graceUntil ?? 0)
  }

  close (): void {
    for (const { timer } of this.pending.values()) clearTimeout(timer)
    this.pending.clear()
    for (const timer of this.settling) clearTimeout(timer)
    this.settling.clear()
  }

  private cutOlderThan (keyId: string, generation: number): void {
    const test: SupersededTest = (p) => p.via === 'token' && p.keyId === keyId && (p.keyGeneration ?? 0) < generation
    this.cut(test)
    const again = setTimeout(() => {
      this.settling.delete(again)
      this.cut(test)
    }, SETTLE_MS)
    again.unref()
    this.settling.add(again)
  }
}
