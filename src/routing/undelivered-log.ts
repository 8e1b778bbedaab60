import type { RouteEvent } from './types.js'

export type UndeliveredWhy = 'dropped' | 'expired' | 'shutdown'

// A line holds at most this many ids; a burst of drops becomes one line a second per route and reason.
const LOGGED_IDS_MAX = 100
const FLUSH_EVERY_MS = 1000

interface Tally { route: string, why: UndeliveredWhy, count: number, ids: string[] }

/**
 * The log of routed events given up on: never silent, never a line per event
 * (a full queue refuses every packet of a flood, a shutdown drops thousands
 * of `$disconnect` events at once).
 */
export class UndeliveredLog {
  private readonly tallies = new Map<string, Tally>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly write: (tally: Omit<Tally, 'route'> & { route: string }) => void) {}

  add (route: string, why: UndeliveredWhy, events: readonly RouteEvent[]): void {
    const key = `${route}\n${why}`
    let tally = this.tallies.get(key)
    if (tally === undefined) this.tallies.set(key, tally = { route, why, count: 0, ids: [] })
    tally.count += events.length
    for (let i = 0; i < events.length && tally.ids.length < LOGGED_IDS_MAX; i++) tally.ids.push(events[i].id)
    if (this.timer === undefined) {
      this.timer = setTimeout(() => { this.flush() }, FLUSH_EVERY_MS)
      this.timer.unref()
    }
  }

  flush (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    for (const tally of this.tallies.values()) this.write(tally)
    this.tallies.clear()
  }
}
