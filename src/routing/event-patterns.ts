/**
 * A route's `events` (SPEC §10): patterns as in policies (a literal, `*`, or
 * a prefix ending in `*`) for client events, and lifecycle events by name
 * (`*` never matches a `$` event: clients cannot send those). Matching is a
 * set lookup and a few `startsWith`: it runs on every packet of a namespace
 * with routes, without allocating.
 */
export class EventPatterns {
  private readonly exact = new Set<string>()
  private readonly prefixes: string[] = []
  private readonly any: boolean

  constructor (patterns: readonly string[]) {
    let any = false
    for (const pattern of patterns) {
      if (pattern === '*') any = true
      else if (pattern.endsWith('*')) this.prefixes.push(pattern.slice(0, -1))
      else this.exact.add(pattern)
    }
    this.any = any
  }

  matches (event: string): boolean {
    if (this.exact.has(event)) return true
    if (event.charCodeAt(0) === 36 /* $ */) return false
    if (this.any) return true
    for (let i = 0; i < this.prefixes.length; i++) if (event.startsWith(this.prefixes[i])) return true
    return false
  }
}
