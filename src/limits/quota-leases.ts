import type { Rate } from '../config.js'
import type { SharedStore } from '../stores/shared-store.js'

interface Lease {
  /** Units this instance may still spend without asking the store. */
  units: number
  /** When the store's window (and so this lease) ends. */
  expiresAt: number
  /** The store granted nothing: the window's quota is spent cluster-wide. */
  exhausted: boolean
  /** A lease request in flight, shared by callers that arrive while it runs. */
  pending?: Promise<void>
}

/**
 * Cluster-wide quotas with no store round trip per unit on the common path:
 * each instance leases a batch of units from the store (one atomic script) and
 * spends it locally. The store never grants more than the window's max in all,
 * so the cluster never exceeds the limit; what an instance leased and did not
 * spend is lost for that window, so the batch size trades accuracy (at most
 * batch × instances units stranded per window) for store load (one call per
 * batch). Small limits lease one unit at a time and are exact.
 */
export class QuotaLeases {
  private readonly leases = new Map<string, Lease>()

  constructor (private readonly store: SharedStore, private readonly batchFor: (max: number) => number = defaultBatch) {}

  /**
   * Spends one unit of `key`'s quota. Returns true/false synchronously when the
   * local lease decides, or a promise when the store must be asked.
   */
  take (key: string, rate: Rate): boolean | Promise<boolean> {
    const lease = this.leases.get(key)
    if (lease !== undefined && lease.pending === undefined && lease.expiresAt > Date.now()) {
      if (lease.units > 0) {
        lease.units--
        return true
      }
      if (lease.exhausted) return false
    }
    return this.takeFromStore(key, rate)
  }

  private async takeFromStore (key: string, rate: Rate): Promise<boolean> {
    // Callers that share one lease request may find it spent by the others: ask again until the store says the window is.
    for (;;) {
      await this.refill(key, rate)
      const lease = this.leases.get(key) as Lease
      if (lease.units > 0) {
        lease.units--
        return true
      }
      if (lease.exhausted) return false
    }
  }

  /** Milliseconds until `key`'s current window ends (for Retry-After). */
  retryAfterMs (key: string): number {
    const lease = this.leases.get(key)
    return lease === undefined ? 0 : Math.max(0, lease.expiresAt - Date.now())
  }

  private async refill (key: string, rate: Rate): Promise<void> {
    let lease = this.leases.get(key)
    if (lease?.pending !== undefined) return await lease.pending
    if (lease === undefined || lease.expiresAt <= Date.now()) {
      lease = { units: 0, expiresAt: 0, exhausted: false }
      this.leases.set(key, lease)
    }
    const current = lease
    current.pending = (async () => {
      try {
        const { granted, resetInMs } = await this.store.lease(`quota:${key}`, rate.windowMs, rate.max, this.batchFor(rate.max))
        current.units += granted
        current.expiresAt = Date.now() + resetInMs
        current.exhausted = granted === 0
      } catch {
        // The store is away: live sockets keep working on what this instance knows (SPEC §7), so the
        // limit is counted here alone for one window (each instance may then admit up to the limit),
        // and the store is asked again when that window ends.
        current.units = rate.max
        current.expiresAt = Date.now() + rate.windowMs
        current.exhausted = true
      } finally {
        current.pending = undefined
      }
    })()
    await current.pending
  }

  /** Drops expired leases (called periodically so idle keys do not accumulate). */
  sweep (): void {
    const now = Date.now()
    for (const [key, lease] of this.leases) if (lease.expiresAt <= now && lease.pending === undefined) this.leases.delete(key)
  }
}

/** One unit at a time up to 20 (exact for small limits), then a twentieth of the limit, at most 100. */
export function defaultBatch (max: number): number {
  return max <= 20 ? 1 : Math.min(100, Math.floor(max / 20))
}
