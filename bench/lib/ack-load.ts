// A load generator of request/response round trips (the routing scenario's):
// wire clients on /chat, in rooms of two, emitting one event name with an ack,
// either closed loop (`inflight` outstanding per client, a new one on each
// ack) or open loop (message k due at t0 + k/rate, its latency counted from
// that intended time, as bench/scenarios/open-loop.ts does). An ack counts
// when it starts `[{"ok":true`; anything else is a refusal.
import { fileURLToPath } from 'node:url'
import { serveLoadGenerator, isEntry } from './scenario.js'
import { usageNow, usageSince } from './sched.js'
import { percentile, sleep } from './stats.js'
import { openInRooms, type WireSocket } from './wire.js'

export const ACK_LOAD_FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'
const OK_PREFIX = '[{"ok":true'
/** Open loop: messages on the wire before the generator holds back (held-back ones keep their intended times). */
export const MAX_OUTSTANDING = 1000
/** How long `stop` waits for the last acks. */
export const DRAIN_MS = 10_000
export const roomOf = (socket: number): string => `bench-route-${socket >> 1}`

export type LoadStart = { event: string, inflight: number } | { event: string, rate: number }

/** What a window saw: rates and latencies of the round trips it covered, and the generator's own load. */
export interface RoundTrips {
  elapsedMs: number
  loadCpuShare: number
  loadWaitShare: number
  /** Acks received during the window, whichever message they answer (the achieved rate). */
  ackedInWindow: number
  /** Round trips whose latency is counted: acked during the window (closed loop), or due in it (open loop). */
  acked: number
  refused: number
  /** Events relayed to these clients during the window (a routed event is relayed to nobody). */
  deliveries: number
  p50Ms: number
  p99Ms: number
  /**
   * Open loop: messages due in the window never sent (held back behind MAX_OUTSTANDING when the window
   * closed: each counts in p50/p99 and the send lag with its wait until the drain ended, a lower bound), or sent and never acked; the generator's send lag p99.
   */
  notSent: number
  unacked: number
  sendLagP99Ms: number
  /** The first refusal's ack, for the error message. */
  firstRefusal?: string
}

function loadGenerator (): void {
  let sockets: WireSocket[] = []
  let start: LoadStart = { event: '', inflight: 0 }
  let running = false
  let generation = 0
  let outstanding = 0
  let timer: NodeJS.Timeout | undefined
  // Window bookkeeping. Closed loop: acks after `mark`. Open loop: messages k in [kStart, kEnd).
  let inWindow = false
  let kStart = Infinity
  let kEnd = Infinity
  let t0 = 0
  let next = 0
  let acked = 0
  let ackedInWindow = 0
  let refused = 0
  let deliveries = 0
  let firstRefusal: string | undefined
  let latMs: number[] = []
  let lagMs: number[] = []
  let marked = usageNow()
  let windowCounts = { elapsedMs: 0, loadCpuShare: 0, loadWaitShare: 0, ackedInWindow: 0, deliveries: 0 }

  const rate = (): number => 'rate' in start ? start.rate : 0
  const dueBy = (now: number): number => Math.floor(((now - t0) * rate()) / 1000) + 1

  /** Sends message `k` on its socket; `intended` is when it was due (its latency runs from there). */
  function send (k: number, intended: number): void {
    const i = k % sockets.length
    const gen = generation
    const counted = (): boolean => 'rate' in start ? k >= kStart && k < kEnd : inWindow
    outstanding++
    sockets[i].emit(start.event, { room: roomOf(i), data: { item: 'book', quantity: 1, seq: k } }, (frame, at) => {
      outstanding--
      if (gen !== generation) return
      const ok = frame.toString('latin1', at, at + OK_PREFIX.length) === OK_PREFIX
      if (ok && inWindow) ackedInWindow++
      if (counted()) {
        if (ok) {
          acked++
          latMs.push(performance.now() - intended)
        } else {
          refused++
          firstRefusal ??= frame.toString('utf8', at)
        }
      }
      if (running && !('rate' in start)) send(next++, performance.now())
    })
  }

  // Open loop: a 1 ms timer (Node's floor) sends everything due; the wait between ticks is in the latency.
  function tick (): void {
    if (!running) return
    const now = performance.now()
    const due = dueBy(now)
    while (next < due && outstanding < MAX_OUTSTANDING) {
      const k = next++
      const intended = t0 + (k * 1000) / rate()
      if (k >= kStart && k < kEnd) lagMs.push(performance.now() - intended)
      send(k, intended)
    }
    timer = setTimeout(tick, 1)
  }

  serveLoadGenerator({
    /** Connects the clients (a token each, or a `sub` for a server without auth) and joins each to its room of two. */
    connect: async (args: { url: string, tokens: Array<string | null>, subs: string[] }) => {
      sockets = await openInRooms(args, NAMESPACE, roomOf)
      for (const socket of sockets) socket.onEvent = () => { if (inWindow) deliveries++ }
      return { clients: sockets.length }
    },
    /** One round trip of `event`, its ack decoded (the set-up checks). */
    check: async (args: { event: string }) => await sockets[0].emitWithAck(args.event, { room: roomOf(0), data: { item: 'book', quantity: 1, seq: -1 } }),
    start: (args: LoadStart) => {
      start = args
      generation++
      running = true
      next = 0
      kStart = Infinity
      kEnd = Infinity
      if ('rate' in args) {
        t0 = performance.now()
        tick()
      } else {
        for (let n = 0; n < sockets.length * args.inflight; n++) send(next++, performance.now())
      }
    },
    mark: () => {
      acked = 0
      ackedInWindow = 0
      refused = 0
      deliveries = 0
      firstRefusal = undefined
      latMs = []
      lagMs = []
      inWindow = true
      kStart = 'rate' in start ? dueBy(performance.now()) : Infinity
      marked = usageNow()
    },
    /** Closes the window; the load goes on until `stop`. */
    end: () => {
      const usage = usageSince(marked)
      windowCounts = { elapsedMs: performance.now() - marked.at, loadCpuShare: usage.cpuShare, loadWaitShare: usage.waitShare, ackedInWindow, deliveries }
      inWindow = false
      if ('rate' in start) kEnd = dueBy(performance.now())
      return windowCounts
    },
    /** Stops sending, waits for the outstanding acks, and sums the window up. */
    stop: async (): Promise<RoundTrips> => {
      running = false
      if (timer !== undefined) clearTimeout(timer)
      const deadline = performance.now() + DRAIN_MS
      while (outstanding > 0 && performance.now() < deadline) await sleep(10)
      const open = 'rate' in start
      const due = open ? kEnd - kStart : 0
      const sent = open ? Math.max(0, Math.min(next, kEnd) - kStart) : 0
      const stoppedAt = performance.now()
      for (let k = Math.max(next, kStart); open && k < kEnd; k++) {
        latMs.push(stoppedAt - (t0 + (k * 1000) / rate()))
        lagMs.push(stoppedAt - (t0 + (k * 1000) / rate()))
      }
      return {
        ...windowCounts,
        acked,
        refused,
        p50Ms: percentile(latMs, 50),
        p99Ms: percentile(latMs, 99),
        notSent: due - sent,
        unacked: open ? sent - acked - refused : 0,
        sendLagP99Ms: open ? percentile(lagMs, 99) : 0,
        ...(firstRefusal !== undefined ? { firstRefusal } : {})
      }
    },
    disconnect: () => { for (const socket of sockets) socket.close() }
  })
}

if (isEntry(import.meta.url)) loadGenerator()
