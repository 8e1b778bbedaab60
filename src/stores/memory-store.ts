import { EventEmitter } from 'node:events'
import type { SharedStore, WindowCount } from './shared-store.js'

const SWEEP_INTERVAL_MS = 10_000

/** The single-instance store: exact, in-process, nothing shared. */
export function createMemoryStore (): SharedStore {
  const windows = new Map<string, { count: number, resetAt: number }>()
  const flags = new Map<string, number>()
  const counters = new Map<string, number>()
  const bus = new EventEmitter()
  bus.setMaxListeners(0)

  // Expired entries are dropped lazily on read and by this sweep, so memory stays bounded by live keys.
  const sweep = setInterval(() => {
    const now = Date.now()
    for (const [key, w] of windows) if (w.resetAt <= now) windows.delete(key)
    for (const [key, until] of flags) if (until <= now) flags.delete(key)
  }, SWEEP_INTERVAL_MS)
  sweep.unref()

  return {
    kind: 'memory',
    async hit (key, windowMs, by = 1): Promise<WindowCount> {
      const now = Date.now()
      let w = windows.get(key)
      if (w === undefined || w.resetAt <= now) {
        w = { count: 0, resetAt: now + windowMs }
        windows.set(key, w)
      }
      w.count += by
      return { count: w.count, resetInMs: w.resetAt - now }
    },
    async lease (key, windowMs, max, want) {
      const now = Date.now()
      let w = windows.get(key)
      if (w === undefined || w.resetAt <= now) {
        w = { count: 0, resetAt: now + windowMs }
        windows.set(key, w)
      }
      const granted = Math.max(0, Math.min(want, max - w.count))
      w.count += granted
      return { granted, resetInMs: w.resetAt - now }
    },
    async acquireSlot (key, max) {
      const taken = counters.get(key) ?? 0
      if (taken >= max) return false
      counters.set(key, taken + 1)
      return true
    },
    async releaseSlot (key) {
      const taken = (counters.get(key) ?? 0) - 1
      if (taken <= 0) counters.delete(key)
      else counters.set(key, taken)
    },
    async setFlag (key, ttlMs) {
      flags.set(key, Date.now() + ttlMs)
    },
    async flagTtl (...keys) {
      const now = Date.now()
      for (const key of keys) {
        const until = flags.get(key)
        if (until !== undefined && until > now) return until - now
      }
      return 0
    },
    async publish (channel, message) {
      // Asynchronous like Redis pub/sub, so no caller depends on a synchronous echo.
      setImmediate(() => bus.emit(channel, message))
    },
    async subscribe (channel, listener) {
      bus.on(channel, listener)
    },
    async ping () {},
    async close () {
      clearInterval(sweep)
      bus.removeAllListeners()
    }
  }
}
