import { performance } from 'node:perf_hooks'
import { CircuitBreaker, type Admission } from './breaker.js'
import type { CallResult, UpstreamTransport } from './transport.js'
import type { RouteEvent, RouteOutcome, UpstreamAnswer } from './types.js'
import type { UndeliveredWhy } from './undelivered-log.js'

/** What an upstream reports; the routing plugin turns it into metrics, logs and alerts. */
export interface UpstreamReports {
  outcome: (outcome: RouteOutcome, seconds?: number) => void
  breaker: (open: boolean) => void
  /** Notify events given up on (queue full, a minute of retries, shutdown): logged and counted by the caller. */
  undeliverable: (events: readonly RouteEvent[], why: UndeliveredWhy) => void
}

export interface UpstreamLimits { timeoutMs: number, maxInFlight: number }

// Notify mode (SPEC §10): at least once, retried with backoff for up to a minute, the same event (and id) each time.
export const NOTIFY_QUEUE_MAX = 10_000
// And at most this many bytes of events (10,000 packets of SOCKET_MAX_PAYLOAD would be 640 MiB).
export const NOTIFY_QUEUE_MAX_BYTES = 64 * 1024 * 1024
export const NOTIFY_RETRY_FOR_MS = 60_000
const RETRY_FIRST_MS = 250
const RETRY_MAX_MS = 10_000
// How often a queue blocked by an open breaker or a down connection looks again.
const BLOCKED_POLL_MS = 250

const UNAVAILABLE: UpstreamAnswer = { ok: false, code: 'UNAVAILABLE', message: 'The backend service is unavailable' }

interface Pending { event: RouteEvent, bytes: number, firstAt: number, attempts: number, retryAt: number }

/**
 * One upstream of a route, with its protection (SPEC §10): at most
 * `maxInFlight` calls at once (a request beyond is refused at once, never
 * queued), a timeout per call, and a circuit breaker. Request mode answers
 * with the backend's answer; notify mode queues (bounded) and delivers at
 * least once, retrying failures with backoff for up to a minute.
 */
export class RouteUpstream {
  private inFlight = 0
  private queuedBytes = 0
  private readonly breaker: CircuitBreaker
  private readonly ready: Pending[] = []
  private readyHead = 0
  private readonly retrying = new Set<Pending>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private blockedTimer: NodeJS.Timeout | undefined
  private idle: (() => void) | undefined
  private draining = false
  private stopped = false
  /** The upstream that took over this one's queue (its route was edited): late retries go there. */
  private successor: RouteUpstream | undefined

  constructor (
    readonly transport: UpstreamTransport,
    private readonly limits: UpstreamLimits,
    private readonly reports: UpstreamReports
  ) {
    // A replaced upstream's breaker is no longer the route's: it changes silently while the old one drains.
    this.breaker = new CircuitBreaker((open) => { if (this.successor === undefined) reports.breaker(open) })
  }

  get breakerOpen (): boolean { return this.breaker.open }

  /** Calls the backend and answers what the client is told; refusals of the gateway's own come at once. */
  request (event: RouteEvent): UpstreamAnswer | Promise<UpstreamAnswer> {
    if (this.inFlight >= this.limits.maxInFlight) return this.refuse('overloaded')
    if (!this.transport.ready) {
      // A connection that is down counts against the breaker like a failed call: it opens, and alerts.
      this.breaker.failure('call')
      return this.refuse('unreachable')
    }
    const admission = this.breaker.admit()
    if (admission === undefined) return this.refuse('breaker_open')
    return this.call(event, admission).then((result) => result.kind === 'answer' ? result.answer : UNAVAILABLE)
  }

  /** Queues an event (of about `bytes` on the wire) for at-least-once delivery; false (and reported) when the queue is full. */
  notify (event: RouteEvent, bytes: number): boolean {
    if (this.stopped || this.queued >= NOTIFY_QUEUE_MAX || this.queuedBytes + bytes > NOTIFY_QUEUE_MAX_BYTES) {
      this.reports.outcome('dropped')
      this.reports.undeliverable([event], 'dropped')
      return false
    }
    this.queuedBytes += bytes
    this.ready.push({ event, bytes, firstAt: Date.now(), attempts: 0, retryAt: 0 })
    this.pump()
    return true
  }

  /** Moves the notify queue of an upstream this one replaces (a route's upstream was edited). */
  adopt (previous: RouteUpstream): void {
    previous.successor = this
    const now = Date.now()
    for (const pending of previous.takeQueue()) {
      // An event waiting for its retry keeps what is left of its backoff.
      if (pending.retryAt > now) {
        this.queuedBytes += pending.bytes
        this.wait(pending, pending.retryAt - now)
      } else {
        this.requeue(pending, false)
      }
    }
    this.pump()
  }

  /** Waits for the notify queue to empty, until `deadline` (ms since the epoch); what is left is reported undeliverable. */
  async drain (deadline: number): Promise<void> {
    this.draining = true
    while ((this.queued > 0 || this.inFlight > 0) && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.idle = resolve
        setTimeout(resolve, Math.min(50, Math.max(0, deadline - Date.now()))).unref()
      })
      this.pump()
    }
    const left = this.takeQueue()
    if (left.length > 0) this.reports.undeliverable(left.map((p) => p.event), 'shutdown')
  }

  async close (): Promise<void> {
    this.stopped = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    if (this.blockedTimer !== undefined) clearTimeout(this.blockedTimer)
    await this.transport.close()
  }

  private get queued (): number {
    return this.ready.length - this.readyHead + this.retrying.size
  }

  private takeQueue (): Pending[] {
    const taken = [...this.ready.slice(this.readyHead), ...this.retrying]
    this.queuedBytes = 0
    this.ready.length = 0
    this.readyHead = 0
    this.retrying.clear()
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    return taken
  }

  private refuse (outcome: RouteOutcome): UpstreamAnswer {
    this.reports.outcome(outcome)
    return UNAVAILABLE
  }

  private async call (event: RouteEvent, admission: Admission): Promise<CallResult> {
    this.inFlight++
    const started = performance.now()
    let result: CallResult
    try {
      result = await this.transport.call(event, this.limits.timeoutMs)
    } catch {
      // Transports never reject; one that does (a bug) fails the call rather than leak its slot.
      result = { kind: 'failed' }
    } finally {
      this.inFlight--
    }
    const seconds = (performance.now() - started) / 1000
    if (result.kind === 'answer') {
      this.breaker.success(admission)
      this.reports.outcome(result.answer.ok ? 'ok' : 'refused', seconds)
    } else {
      this.breaker.failure(admission)
      this.reports.outcome(result.kind, seconds)
    }
    this.pump()
    this.idle?.()
    return result
  }

  /** Sends queued notify events while the upstream takes them. */
  private pump (): void {
    while (this.readyHead < this.ready.length) {
      if (this.inFlight >= this.limits.maxInFlight) return
      const pending = this.ready[this.readyHead]
      if (Date.now() - pending.firstAt >= NOTIFY_RETRY_FOR_MS) {
        this.shift()
        this.giveUp(pending)
        continue
      }
      const admission = this.transport.ready ? this.breaker.admit() : undefined
      if (admission === undefined) return this.pollWhileBlocked()
      this.shift()
      void this.call(pending.event, admission).then((result) => {
        if (result.kind !== 'answer') this.retry(pending)
        else this.queuedBytes -= pending.bytes
      })
    }
  }

  private shift (): void {
    this.readyHead++
    if (this.readyHead === this.ready.length) {
      this.ready.length = 0
      this.readyHead = 0
    } else if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
      this.ready.splice(0, this.readyHead)
      this.readyHead = 0
    }
  }

  private retry (pending: Pending): void {
    if (this.successor !== undefined) {
      this.queuedBytes -= pending.bytes
      return this.successor.requeue(pending, true)
    }
    if (this.stopped) {
      this.queuedBytes -= pending.bytes
      return this.reports.undeliverable([pending.event], 'shutdown')
    }
    pending.attempts++
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (pending.attempts - 1)) * (0.75 + Math.random() / 2)
    if (Date.now() + delay - pending.firstAt >= NOTIFY_RETRY_FOR_MS) return this.giveUp(pending)
    this.wait(pending, delay)
  }

  /** Holds a queued event back for `delay` ms, then puts it at the end of the ready queue. */
  private wait (pending: Pending, delay: number): void {
    pending.retryAt = Date.now() + delay
    this.retrying.add(pending)
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (!this.retrying.delete(pending)) return
      this.ready.push(pending)
      this.pump()
    }, delay)
    timer.unref()
    this.timers.add(timer)
  }

  private requeue (pending: Pending, pump: boolean): void {
    this.queuedBytes += pending.bytes
    this.ready.push(pending)
    if (pump) this.pump()
  }

  private giveUp (pending: Pending): void {
    this.queuedBytes -= pending.bytes
    this.reports.outcome('expired')
    this.reports.undeliverable([pending.event], 'expired')
  }

  private pollWhileBlocked (): void {
    // While draining, drain() itself looks again every few milliseconds.
    if (this.blockedTimer !== undefined || this.draining || this.stopped) return
    this.blockedTimer = setTimeout(() => {
      this.blockedTimer = undefined
      this.pump()
    }, BLOCKED_POLL_MS)
    this.blockedTimer.unref()
  }
}
