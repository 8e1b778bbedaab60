import type { GatewaySocket } from './types.js'

const EXPIRING_NOTICE_MS = 60_000
const EXPIRED_GRACE_MS = 30_000
const TICK_MS = 250

type Phase = 'notice' | 'expire' | 'cut'

export interface ExpiryHandlers {
  /** 60 s before exp. */
  expiring: (socket: GatewaySocket, expiresAt: string) => void
  /** At exp: packets are refused from now on. */
  expired: (socket: GatewaySocket, expiresAt: string) => void
  /** 30 s after exp without a refresh. */
  cut: (socket: GatewaySocket) => void
}

/**
 * Token expiry for every socket of an instance on one ticking clock: sockets
 * wait in 250 ms slots rather than holding timers of their own (two timers a
 * socket cost more memory than the rest of an idle connection's gateway state).
 */
export class ExpiryWatch {
  private readonly slots = new Map<number, Set<GatewaySocket>>()
  private readonly pending = new WeakMap<GatewaySocket, { slot: number, phase: Phase }>()
  private readonly timer: NodeJS.Timeout
  private lastSwept = Math.floor(Date.now() / TICK_MS)

  constructor (private readonly handlers: ExpiryHandlers) {
    this.timer = setInterval(() => { this.sweep() }, TICK_MS)
    this.timer.unref()
  }

  /** (Re)starts the socket's clock from its principal's `exp`. */
  watch (socket: GatewaySocket): void {
    this.forget(socket)
    const exp = socket.data.principal.exp
    if (exp === undefined) return
    const now = Date.now()
    if (exp * 1000 - EXPIRING_NOTICE_MS > now) this.enqueue(socket, exp * 1000 - EXPIRING_NOTICE_MS, 'notice')
    else {
      // Already inside the last minute: the notice goes out at once.
      this.handlers.expiring(socket, new Date(exp * 1000).toISOString())
      this.enqueue(socket, exp * 1000, 'expire')
    }
  }

  forget (socket: GatewaySocket): void {
    const entry = this.pending.get(socket)
    if (entry === undefined) return
    const slot = this.slots.get(entry.slot)
    slot?.delete(socket)
    // An emptied slot goes now, not when its time comes (under churn, up to JWT_TTL of empty slots).
    if (slot?.size === 0) this.slots.delete(entry.slot)
    this.pending.delete(socket)
  }

  close (): void {
    clearInterval(this.timer)
  }

  private enqueue (socket: GatewaySocket, at: number, phase: Phase): void {
    // Never in a slot already swept: it would wait forever.
    const slot = Math.max(Math.ceil(at / TICK_MS), this.lastSwept + 1)
    let sockets = this.slots.get(slot)
    if (sockets === undefined) {
      sockets = new Set()
      this.slots.set(slot, sockets)
    }
    sockets.add(socket)
    this.pending.set(socket, { slot, phase })
  }

  private sweep (): void {
    const now = Math.floor(Date.now() / TICK_MS)
    for (let slot = this.lastSwept + 1; slot <= now; slot++) {
      this.lastSwept = slot
      const sockets = this.slots.get(slot)
      if (sockets === undefined) continue
      this.slots.delete(slot)
      for (const socket of sockets) this.advance(socket)
    }
  }

  private advance (socket: GatewaySocket): void {
    const entry = this.pending.get(socket)
    this.pending.delete(socket)
    const exp = socket.data.principal.exp
    if (entry === undefined || exp === undefined || !socket.connected) return
    const expiresAt = new Date(exp * 1000).toISOString()
    if (entry.phase === 'notice') {
      this.handlers.expiring(socket, expiresAt)
      this.enqueue(socket, exp * 1000, 'expire')
    } else if (entry.phase === 'expire') {
      this.handlers.expired(socket, expiresAt)
      this.enqueue(socket, exp * 1000 + EXPIRED_GRACE_MS, 'cut')
    } else {
      this.handlers.cut(socket)
    }
  }
}
