import type { KeyObject } from 'node:crypto'
import { signingKey } from './signing.js'
import type { LiveRouteConfig } from './types.js'

/**
 * The secrets a route signs with, updated in place by edits and rotations
 * (its upstream holds `now`). Both sign until the previous one's grace ends,
 * by this instance's clock (the end was set by the database's).
 */
export class SigningKeys {
  private current: readonly KeyObject[] = []
  private both: readonly KeyObject[] = []
  private previousUntil = 0

  update (config: LiveRouteConfig): void {
    const current = signingKey(config.secret)
    this.current = [current]
    this.both = config.previousSecret === null ? this.current : [current, signingKey(config.previousSecret)]
    this.previousUntil = config.previousExpiresAt
  }

  now = (): readonly KeyObject[] => Date.now() < this.previousUntil ? this.both : this.current
}
