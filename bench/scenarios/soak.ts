// Scenario: soak. One gateway (B, a fresh process of its own) under a steady
// mixed load for BENCH_SOAK_MINUTES (default 30), every rate fixed for the
// whole run: connection churn (authorised sockets that connect, join a room
// and leave), relay in rooms of a few members, POST /auth/token, and
// long-lived sockets (idle ones and the relay's) that swap their tokens with
// auth:refresh using the minted ones, so none expires. Every SAMPLE_SECONDS
// the orchestrator scrapes the server's /metrics (prom-client's default
// metrics): RSS, heap used, open file descriptors, event-loop lag p99; every
// minute, heap used after a forced gc (over IPC). The report is each series'
// least-squares slope per 10 minutes after a warm-up, with a verdict.
// Written to bench/results/soak.{md,json}: run.ts rewrites latest.* on every run, partial or not.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { isEntry, quiesce, serveLoadGenerator, VARIANT_DESCRIPTIONS, type ServerSet } from '../lib/scenario.js'
import { median, percentile, sleep, waitFor } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'
import { ConnectRefused, openMany, WireSocket } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const RESULTS = fileURLToPath(new URL('../results/', import.meta.url))
const NAMESPACE = '/chat'

/** Long-lived sockets that only sit in a room of their own (heartbeats and their refreshes). */
const IDLE = 200
/** Long-lived sockets that publish, in rooms of ROOM_SIZE. */
const RELAY_SOCKETS = 40
const ROOM_SIZE = 4
/** Publishes per second over all relay sockets (each delivered to ROOM_SIZE − 1 members). */
const RELAY_RATE = 300
/** Churned connections per second, each alive CHURN_LIFETIME_MS after its CONNECT. */
const CHURN_RATE = 20
const CHURN_LIFETIME_MS = 2000
const CHURN_ROOMS = 20
/** Subjects the churned sockets cycle through; each one's token is replaced by newly minted ones as they come. */
const CHURN_SUBS = 100
/** POST /auth/token per second: the long-lived sockets' refreshes first, the churn subjects' tokens with the rest. */
const TOKEN_RATE = 8
/** Every long-lived socket refreshes its token this often (JWT_TTL is the gateway's default, 900 s). */
const REFRESH_SECONDS = 300
const SAMPLE_SECONDS = 5
/** A forced gc (heap after gc) once a minute, or 10 times in a shorter run; the scrape right after it is discarded (its lag p99 holds the gc's pause). */
const GC_EVERY_SECONDS = 60
/** The gateway's connection-state recovery keeps every broadcast this long (src/plugins/io.ts)… */
const RECOVERY_MS = 2 * 60_000
/** …and socket.io-adapter drops expired packets once a minute: the idle tail waits out both. */
const RECOVERY_SWEEP_MS = 60_000
const IDLE_TAIL_MS = RECOVERY_MS + RECOVERY_SWEEP_MS + 10_000
const MAX_OUTSTANDING_PUBLISHES = 2000
const MAX_PENDING_CONNECTS = 200
const MAX_PENDING_TOKENS = 50
const DRAIN_MS = 15_000
/** A series is flat when its slope per 10 min is under this share of its mean (or its absolute floor, whichever is larger). */
const RELATIVE_BOUND = 0.02
/** RATE_LIMIT_TOKEN as the brief asks (never limited); RATE_LIMIT_TRANSPORT raised too, should it limit connections per address. */
const OVERLAY = { RATE_LIMIT_TOKEN: '1000000/minute', RATE_LIMIT_TRANSPORT: '1000000/minute' }

const TEXT = 'The quick brown fox jumps over the lazy dog; the gateway relays it to the room.'
const idleRoom = (i: number): string => `soak-idle-${i}`
const relayRoom = (r: number): string => `soak-relay-${r}`
const churnRoom = (r: number): string => `soak-churn-${r}`
const MESSAGE_PREFIX = Buffer.from(`42${NAMESPACE},["message",`)

// ---- load-generator side (its own process, pinned to the load CPU) ----

interface Errors {
  /** CONNECT_ERROR answers to churned connects, by message. */
  refused: Record<string, number>
  /** Churned connects that failed otherwise (network error, closed before connecting). */
  connectErrors: number
  /** Churned sockets that lost their connection before their lifetime was up. */
  churnDropped: number
  /** Long-lived sockets (idle or relay) that lost their connection. */
  longLivedLost: number
  joinRefused: number
  publishRefused: number
  /** Acked publishes whose deliveries (ROOM_SIZE − 1 each) never all arrived. */
  lostDeliveries: number
  /** POST /auth/token answers other than 200, by status. */
  tokenStatus: Record<string, number>
  tokenNetworkErrors: number
  refreshRefused: number
  /** Most work ever due but held back (a stalled server): connects, publishes, token requests. */
  connectBacklog: number
  publishBacklog: number
  tokenBacklog: number
}

const noErrors = (): Errors => ({
  refused: {}, connectErrors: 0, churnDropped: 0, longLivedLost: 0, joinRefused: 0, publishRefused: 0, lostDeliveries: 0,
  tokenStatus: {}, tokenNetworkErrors: 0, refreshRefused: 0, connectBacklog: 0, publishBacklog: 0, tokenBacklog: 0
})

const sum = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0)

/** Every error the generators saw (held-back schedules are reported beside, not counted). */
function errorCount (e: Errors): number {
  return sum(e.refused) + e.connectErrors + e.churnDropped + e.longLivedLost + e.joinRefused + e.publishRefused + e.lostDeliveries +
    sum(e.tokenStatus) + e.tokenNetworkErrors + e.refreshRefused
}

/** Cumulative counts since `start`, and the interval's latencies since the previous `sample`. */
interface LoadSample {
  atMs: number
  connects: number
  acked: number
  deliveries: number
  tokens: number
  refreshes: number
  errors: number
  connectP99Ms: number
  ackP99Ms: number
  tokenP99Ms: number
  loadCpuShare: number
  loadWaitShare: number
}

interface Credentials { tokens: Array<string | null>, subs: string[] }

function loadGenerator (): void {
  let url = ''
  let apiKey = ''
  let idle: WireSocket[] = []
  let relay: WireSocket[] = []
  let longLived: WireSocket[] = []
  let churnTokens: string[] = []
  let running = false
  let timer: NodeJS.Timeout | undefined
  let t0 = 0
  let next = { publish: 0, churn: 0, token: 0, refresh: 0 }
  const pending = { publishes: 0, connects: 0, tokens: 0, refreshes: 0, churnLive: 0 }
  let counts = { connects: 0, acked: 0, deliveries: 0, tokens: 0, refreshes: 0 }
  let interval = { connectMs: [] as number[], ackMs: [] as number[], tokenMs: [] as number[] }
  let errors = noErrors()
  /** Long-lived sockets due a refresh, by index into `longLived`. */
  let refreshQueue: number[] = []
  let churnSub = 0
  let usage = usageNow()
  const okPrefix = '[{"ok":true'

  function publish (k: number): void {
    const intended = t0 + (k * 1000) / RELAY_RATE
    const i = k % relay.length
    pending.publishes++
    relay[i].emit('message', { room: relayRoom(Math.floor(i / ROOM_SIZE)), data: { text: TEXT, t: intended } }, (frame, start) => {
      pending.publishes--
      if (frame.toString('latin1', start, start + okPrefix.length) === okPrefix) {
        counts.acked++
        interval.ackMs.push(performance.now() - intended)
      } else {
        errors.publishRefused++
      }
    })
  }

  function churn (k: number): void {
    const intended = t0 + (k * 1000) / CHURN_RATE
    const socket = new WireSocket({ url, namespace: NAMESPACE, auth: { token: churnTokens[k % churnTokens.length] } })
    pending.connects++
    pending.churnLive++
    let closed = false
    const close = (): void => {
      if (closed) return
      closed = true
      socket.close()
      pending.churnLive--
    }
    // Lost before its lifetime was up (close() clears the connected flag first, so our own close does not land here).
    socket.onClose = () => {
      errors.churnDropped++
      if (!closed) { closed = true; pending.churnLive-- }
    }
    socket.connect().then(() => {
      pending.connects--
      counts.connects++
      interval.connectMs.push(performance.now() - intended)
      socket.emit('join', { room: churnRoom(k % CHURN_ROOMS) }, (frame, start) => {
        if (frame.toString('latin1', start, start + okPrefix.length) !== okPrefix) errors.joinRefused++
      })
      setTimeout(close, CHURN_LIFETIME_MS)
    }, (err: unknown) => {
      pending.connects--
      if (err instanceof ConnectRefused) errors.refused[err.message] = (errors.refused[err.message] ?? 0) + 1
      else errors.connectErrors++
      closed = true
      pending.churnLive--
      socket.terminate()
    })
  }

  /** One POST /auth/token: for a long-lived socket due a refresh (then auth:refresh with it), else for the next churn subject. */
  async function mint (): Promise<void> {
    const target = refreshQueue.shift()
    const j = target === undefined ? churnSub++ % CHURN_SUBS : -1
    const started = performance.now()
    pending.tokens++
    let token: string
    try {
      const res = await fetch(`${url}/auth/token`, {
        method: 'POST',
        headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ sub: target !== undefined ? `soak-long-${target}` : `soak-churn-${j}` })
      })
      const text = await res.text()
      const body = (res.status === 200 ? JSON.parse(text) : {}) as { accessToken?: unknown }
      if (typeof body.accessToken !== 'string') {
        errors.tokenStatus[res.status] = (errors.tokenStatus[res.status] ?? 0) + 1
        return
      }
      token = body.accessToken
    } catch {
      errors.tokenNetworkErrors++
      return
    } finally {
      pending.tokens--
    }
    counts.tokens++
    interval.tokenMs.push(performance.now() - started)
    if (target === undefined) { churnTokens[j] = token; return }
    const socket = longLived[target]
    if (!socket.isConnected) return
    pending.refreshes++
    socket.emit('auth:refresh', { token }, (frame, start) => {
      pending.refreshes--
      if (frame.toString('latin1', start, start + okPrefix.length) === okPrefix) counts.refreshes++
      else errors.refreshRefused++
    })
  }

  // A 1 ms timer (Node's floor) starts whatever is due on every schedule, open loop.
  function tick (): void {
    if (!running) return
    const elapsed = performance.now() - t0
    const due = (rate: number): number => Math.floor((elapsed * rate) / 1000) + 1
    const publishDue = due(RELAY_RATE)
    while (next.publish < publishDue && pending.publishes < MAX_OUTSTANDING_PUBLISHES) publish(next.publish++)
    errors.publishBacklog = Math.max(errors.publishBacklog, publishDue - next.publish)
    const churnDue = due(CHURN_RATE)
    while (next.churn < churnDue && pending.connects < MAX_PENDING_CONNECTS) churn(next.churn++)
    errors.connectBacklog = Math.max(errors.connectBacklog, churnDue - next.churn)
    // Socket i of n is first due at i/n of a period, so the refreshes spread evenly over it.
    const refreshDue = Math.floor((elapsed * longLived.length) / (REFRESH_SECONDS * 1000))
    while (next.refresh < refreshDue) refreshQueue.push(next.refresh++ % longLived.length)
    const tokenDue = due(TOKEN_RATE)
    while (next.token < tokenDue && pending.tokens < MAX_PENDING_TOKENS) { next.token++; void mint() }
    errors.tokenBacklog = Math.max(errors.tokenBacklog, tokenDue - next.token)
    timer = setTimeout(tick, 1)
  }

  serveLoadGenerator({
    /** Connects the long-lived sockets (each joins its room) and checks one relayed message end to end. */
    connect: async (args: { url: string, apiKey: string, idle: Credentials, relay: Credentials, churn: Credentials }) => {
      url = args.url
      apiKey = args.apiKey
      churnTokens = args.churn.tokens.map((t) => t ?? '')
      const auth = (c: Credentials) => (i: number) => ({ url, namespace: NAMESPACE, auth: { token: c.tokens[i] } })
      ;({ sockets: idle } = await openMany(args.idle.tokens.length, 20, auth(args.idle)))
      ;({ sockets: relay } = await openMany(args.relay.tokens.length, 20, auth(args.relay)))
      const join = async (socket: WireSocket, room: string): Promise<void> => {
        const joined = await socket.emitWithAck('join', { room }) as { ok?: boolean }
        if (joined?.ok !== true) throw new Error(`join ${room} refused: ${JSON.stringify(joined)}`)
      }
      for (const [i, socket] of idle.entries()) await join(socket, idleRoom(i))
      for (const [i, socket] of relay.entries()) await join(socket, relayRoom(Math.floor(i / ROOM_SIZE)))
      const received = new Promise<void>((resolve) => { relay[1].onEvent = () => { resolve() } })
      const ack = await relay[0].emitWithAck('message', { room: relayRoom(0), data: { text: 'check' } }) as { ok?: boolean }
      if (ack?.ok !== true) throw new Error(`soak relay check refused: ${JSON.stringify(ack)}`)
      await received
      longLived = [...idle, ...relay]
      for (const socket of relay) socket.onEvent = (frame) => { if (frame.subarray(0, MESSAGE_PREFIX.length).equals(MESSAGE_PREFIX)) counts.deliveries++ }
      for (const socket of longLived) socket.onClose = () => { errors.longLivedLost++ }
      return { longLived: longLived.length }
    },
    start: () => {
      t0 = performance.now()
      next = { publish: 0, churn: 0, token: 0, refresh: 0 }
      counts = { connects: 0, acked: 0, deliveries: 0, tokens: 0, refreshes: 0 }
      interval = { connectMs: [], ackMs: [], tokenMs: [] }
      errors = noErrors()
      refreshQueue = []
      usage = usageNow()
      running = true
      tick()
    },
    sample: (): LoadSample => {
      const cpu = usageSince(usage)
      usage = usageNow()
      const s: LoadSample = {
        atMs: performance.now() - t0,
        ...counts,
        errors: errorCount(errors),
        connectP99Ms: percentile(interval.connectMs, 99),
        ackP99Ms: percentile(interval.ackMs, 99),
        tokenP99Ms: percentile(interval.tokenMs, 99),
        loadCpuShare: cpu.cpuShare,
        loadWaitShare: cpu.waitShare
      }
      interval = { connectMs: [], ackMs: [], tokenMs: [] }
      return s
    },
    /** Stops every schedule; resolves once churned sockets, publishes, token requests and refreshes are all done. */
    stop: async (): Promise<{ errors: Errors, counts: typeof counts }> => {
      running = false
      if (timer !== undefined) clearTimeout(timer)
      const deadline = performance.now() + DRAIN_MS
      const busy = (): boolean => pending.churnLive > 0 || pending.publishes > 0 || pending.tokens > 0 || pending.refreshes > 0 ||
        counts.deliveries < counts.acked * (ROOM_SIZE - 1)
      while (busy() && performance.now() < deadline) await sleep(20)
      errors.lostDeliveries = Math.max(0, Math.ceil((counts.acked * (ROOM_SIZE - 1) - counts.deliveries) / (ROOM_SIZE - 1)))
      errors.connectErrors += pending.churnLive
      return { errors, counts }
    },
    disconnect: () => { for (const socket of longLived) socket.close() }
  })
}

// ---- orchestrator side ----

/** One sample of the server: /metrics (prom-client), plus the socket count over IPC. */
export interface ServerSample {
  atS: number
  rssMiB: number
  heapUsedMiB: number
  heapTotalMiB: number
  externalMiB: number
  openFds: number
  lagP99Ms: number
  activeHandles: number
  /** The server's CPU over the interval since the previous sample, as a share of one core. */
  cpuShare: number
  /** Share of the interval the server's main thread was runnable but waiting for its CPU (other processes on it). */
  waitShare: number
  sockets: number
  auditQueueDepth: number
  /** Heap used after a forced gc, on the samples that take one (once a minute, or 10 times in a shorter run). */
  heapAfterGcMiB?: number
  load: LoadSample
}

/** Prometheus text exposition: `name{labels} value` → value, keyed by the name with its labels as written. */
function parseMetrics (text: string): Map<string, number> {
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    values.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return values
}

const MiB = 2 ** 20

/** Metrics the scrape must carry, and where the two that /proc also has come from when it does not. */
function readMetrics (metrics: Map<string, number>, pid: number): Omit<ServerSample, 'atS' | 'cpuShare' | 'waitShare' | 'sockets' | 'load' | 'heapAfterGcMiB'> & { cpuSeconds: number } {
  const get = (name: string): number => {
    const value = metrics.get(name)
    if (value === undefined) throw new Error(`soak: /metrics has no ${name} (prom-client default metrics off?)`)
    return value
  }
  const rss = metrics.get('process_resident_memory_bytes') ?? Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024
  const fds = metrics.get('process_open_fds') ?? readdirSync(`/proc/${pid}/fd`).length
  return {
    rssMiB: rss / MiB,
    heapUsedMiB: get('nodejs_heap_size_used_bytes') / MiB,
    heapTotalMiB: get('nodejs_heap_size_total_bytes') / MiB,
    externalMiB: get('nodejs_external_memory_bytes') / MiB,
    openFds: fds,
    lagP99Ms: get('nodejs_eventloop_lag_p99_seconds') * 1000,
    activeHandles: metrics.get('nodejs_active_handles_total') ?? NaN,
    auditQueueDepth: metrics.get('gateway_audit_queue_depth') ?? NaN,
    cpuSeconds: get('process_cpu_seconds_total')
  }
}

async function scrape (server: ServerHandle): Promise<Map<string, number>> {
  const res = await fetch(`${server.url}/metrics`)
  const text = await res.text()
  if (res.status !== 200) throw new Error(`soak: /metrics answered ${res.status}: ${text.slice(0, 200)}`)
  return parseMetrics(text)
}

/** Run-queue wait of a process's main thread so far, in seconds (Linux schedstat); NaN where it is absent. */
function runQueueWaitSeconds (pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9
  } catch {
    return NaN
  }
}

/**
 * The server's open descriptors by kind: TCP by which end it is (its clients,
 * PostgreSQL, listening, else the remote port), unix (the IPC channel) and
 * UDP sockets, sockets in no table (closing), pipes, files by path, and the
 * event loop's own (anon_inode).
 */
function fdKinds (pid: number, serverPort: number, dbPort: number): Record<string, number> {
  const table = (file: string): string[][] => {
    try { return readFileSync(`/proc/${pid}/net/${file}`, 'utf8').split('\n').slice(1).map((line) => line.trim().split(/\s+/)) } catch { return [] }
  }
  const tcp = new Map<string, { local: number, remote: number, state: string }>()
  for (const f of [...table('tcp'), ...table('tcp6')]) {
    if (f.length >= 10) tcp.set(f[9], { local: parseInt(f[1].split(':')[1], 16), remote: parseInt(f[2].split(':')[1], 16), state: f[3] })
  }
  const other = new Map<string, string>()
  for (const f of table('unix')) if (f.length >= 7) other.set(f[6], 'unix socket (the IPC channel)')
  for (const f of [...table('udp'), ...table('udp6')]) if (f.length >= 10) other.set(f[9], 'udp socket')
  const kinds: Record<string, number> = {}
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string
    try { target = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { continue }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
    const s = inode === undefined ? undefined : tcp.get(inode)
    const kind = inode !== undefined
      ? s === undefined ? other.get(inode) ?? 'socket in no table (a connection being torn down)' : s.state === '0A' ? 'tcp listening' : s.local === serverPort ? 'tcp from clients' : s.remote === dbPort ? 'tcp to PostgreSQL' : `tcp to port ${s.remote}`
      : target.startsWith('pipe:') ? 'pipe' : target.startsWith('/') ? `file ${target}` : target
    kinds[kind] = (kinds[kind] ?? 0) + 1
  }
  return kinds
}

/** Least squares y = a + b·x: the slope, its standard error, and the mean of y. */
export function linearFit (xs: number[], ys: number[]): { slope: number, slopeSe: number, mean: number, n: number } {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let sxx = 0
  let sxy = 0
  for (let i = 0; i < n; i++) { sxx += (xs[i] - mx) ** 2; sxy += (xs[i] - mx) * (ys[i] - my) }
  const slope = sxy / sxx
  let sse = 0
  for (let i = 0; i < n; i++) sse += (ys[i] - (my + slope * (xs[i] - mx))) ** 2
  return { slope, slopeSe: n > 2 ? Math.sqrt(sse / (n - 2) / sxx) : NaN, mean: my, n }
}

/** A series of the report: its unit, the absolute floor under which a slope per 10 min is flat whatever the mean, and how to read it. */
interface SeriesSpec { key: keyof ServerSample, label: string, unit: string, floor: number, source: string }

const SERIES: SeriesSpec[] = [
  { key: 'rssMiB', label: 'RSS', unit: 'MiB', floor: 1, source: 'process_resident_memory_bytes' },
  { key: 'heapUsedMiB', label: 'heap used', unit: 'MiB', floor: 1, source: 'nodejs_heap_size_used_bytes, as scraped (between collections: a sawtooth)' },
  { key: 'heapAfterGcMiB', label: 'heap used after a forced gc', unit: 'MiB', floor: 0.5, source: 'process.memoryUsage().heapUsed after gc() twice, over IPC, once a minute' },
  { key: 'openFds', label: 'open file descriptors', unit: '', floor: 3, source: 'process_open_fds' },
  { key: 'lagP99Ms', label: 'event-loop lag p99', unit: 'ms', floor: 1, source: 'nodejs_eventloop_lag_p99_seconds (monitorEventLoopDelay at 10 ms resolution, reset at each scrape: the p99 of the interval)' },
  { key: 'externalMiB', label: 'external memory', unit: 'MiB', floor: 0.5, source: 'nodejs_external_memory_bytes (Buffers and the like)' },
  { key: 'activeHandles', label: 'active handles', unit: '', floor: 3, source: 'nodejs_active_handles_total' },
  { key: 'auditQueueDepth', label: 'audit rows waiting', unit: '', floor: 10, source: 'gateway_audit_queue_depth (rows queued for PostgreSQL)' },
  { key: 'sockets', label: '/chat sockets', unit: '', floor: 3, source: 'the server\'s /chat socket count over IPC (the population: long-lived plus churned alive)' }
]

const LAG_LESS_WAIT = {
  key: 'lagP99LessWaitMs',
  label: 'event-loop lag p99, less what run-queue wait explains',
  unit: 'ms',
  floor: 1,
  source: 'the lag p99 series less b·(wait − mean wait), b the least-squares coefficient of lag on the server\'s run-queue wait share over the analysed samples'
}

/** Information, not judged: how much of each interval the server and the load generator spent waiting for their CPU. */
const WAIT_SOURCE = 'the server\'s main thread run-queue wait (/proc/<pid>/schedstat) over each interval: time it was runnable while other processes held CPU 0'

export interface SeriesResult {
  key: string
  label: string
  unit: string
  source: string
  samples: number
  start: number
  end: number
  mean: number
  min: number
  max: number
  slopePer10Min: number
  slopeSePer10Min: number
  /** The slope over the second half of the analysed span alone: whether a growth is tapering off. */
  secondHalfSlopePer10Min: number
  secondHalfSlopeSePer10Min: number
  boundPer10Min: number
  verdict: 'flat' | 'grows'
}

/**
 * Flat unless the slope per 10 min is both above the bound (RELATIVE_BOUND of
 * the mean, or the series' absolute floor, whichever is larger) and more than
 * twice its standard error: a slope the noise could give is not growth.
 */
interface Point { atS: number, value: number }

function analyse (spec: Omit<SeriesSpec, 'key'> & { key: string }, series: Point[]): SeriesResult | undefined {
  const points = series.filter((p) => typeof p.value === 'number' && Number.isFinite(p.value))
  if (points.length < 3) return undefined
  const per10Min = (ps: Point[]): ReturnType<typeof linearFit> => linearFit(ps.map((p) => p.atS / 600), ps.map((p) => p.value))
  const fit = per10Min(points)
  const ys = points.map((p) => p.value)
  const bound = Math.max(RELATIVE_BOUND * Math.abs(fit.mean), spec.floor)
  const ends = Math.min(5, Math.ceil(points.length / 4))
  const middle = (points[0].atS + points[points.length - 1].atS) / 2
  const secondHalf = points.filter((p) => p.atS >= middle)
  const late = secondHalf.length >= 3 ? per10Min(secondHalf) : undefined
  return {
    key: spec.key,
    label: spec.label,
    unit: spec.unit,
    source: spec.source,
    samples: points.length,
    start: median(ys.slice(0, ends)),
    end: median(ys.slice(-ends)),
    mean: fit.mean,
    min: Math.min(...ys),
    max: Math.max(...ys),
    slopePer10Min: fit.slope,
    slopeSePer10Min: fit.slopeSe,
    secondHalfSlopePer10Min: late?.slope ?? NaN,
    secondHalfSlopeSePer10Min: late?.slopeSe ?? NaN,
    boundPer10Min: bound,
    verdict: fit.slope > bound && fit.slope > 2 * fit.slopeSe ? 'grows' : 'flat'
  }
}

/** The idle server before any load, and after it (every socket gone, the recovery buffer expired). */
interface IdleMemory { rssMiB: number, heapAfterGcMiB: number, openFds: number, externalMiB: number }

export interface SoakReport {
  minutes: number
  warmupSeconds: number
  server: { label: string, description: string, overlay: Record<string, string>, commit: string, srcChanges: string[] }
  params: Record<string, unknown>
  /** Target and achieved rates over the analysed span. */
  rates: Array<{ what: string, target: number, achieved: number, unit: string }>
  series: SeriesResult[]
  serverCpuShare: number
  serverWaitShare: { mean: number, max: number }
  loadCpuShare: number
  loadWaitShare: number
  /** The server's descriptors by kind at the first analysed sample and at the last. */
  fds: { start: Record<string, number>, end: Record<string, number> }
  latencyP99Ms: { connect: number, ack: number, token: number }
  errors: Errors
  errorTotal: number
  totals: { connects: number, acked: number, deliveries: number, tokens: number, refreshes: number }
  idleBefore: IdleMemory
  idleAfter: IdleMemory
  samples: ServerSample[]
}

async function idleMemory (server: ServerHandle): Promise<IdleMemory> {
  const memory = await server.call<NodeJS.MemoryUsage>('gc')
  const m = readMetrics(await scrape(server), server.child.pid!)
  return { rssMiB: m.rssMiB, heapAfterGcMiB: memory.heapUsed / MiB, openFds: m.openFds, externalMiB: m.externalMiB }
}

function gitState (): { commit: string, srcChanges: string[] } {
  const git = (args: string[]): string => { try { return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim() } catch { return '' } }
  return { commit: git(['rev-parse', '--short', 'HEAD']), srcChanges: git(['status', '--porcelain', '--', 'src']).split('\n').filter((l) => l.length > 0) }
}

const mint = async (server: ServerHandle, subs: string[]): Promise<Credentials> => ({ tokens: await server.call<Array<string | null>>('mint', { subs }), subs })

/** The soak: `minutes` of steady load on a fresh B, sampled every SAMPLE_SECONDS. */
export async function run (minutes: number, servers: ServerSet, log: (msg: string) => void): Promise<SoakReport> {
  const durationMs = minutes * 60_000
  // The first 2 minutes, or 10% of a shorter run: start-up JIT, pools and the 2-minute recovery buffer filling.
  const warmupMs = Math.min(2 * 60_000, durationMs / 10)
  const gcEvery = Math.max(2, Math.round(Math.min(GC_EVERY_SECONDS * 1000, durationMs / 10) / (SAMPLE_SECONDS * 1000)))
  const git = gitState()
  const server = await servers.get('B', OVERLAY)
  const pid = server.child.pid!
  const serverPort = Number(new URL(server.url).port)
  const dbPort = Number(new URL(process.env.BENCH_DATABASE_URL ?? 'postgres://localhost:5432').port || 5432)
  const idleBefore = await idleMemory(server)
  let load: LoadHandle | undefined
  try {
    load = await startLoad(FILE)
    const apiKey = await server.call<string>('apiKey')
    const idle = await mint(server, Array.from({ length: IDLE }, (_, i) => `soak-long-${i}`))
    const relay = await mint(server, Array.from({ length: RELAY_SOCKETS }, (_, i) => `soak-long-${IDLE + i}`))
    const churn = await mint(server, Array.from({ length: CHURN_SUBS }, (_, j) => `soak-churn-${j}`))
    await load.call('connect', { url: server.url, apiKey, idle, relay, churn })
    await waitFor(`${server.label} to hold the soak's long-lived sockets`, async () => await server.call<number>('sockets') === IDLE + RELAY_SOCKETS)

    // The first scrape starts the lag and CPU intervals; it is not a sample.
    let previous = readMetrics(await scrape(server), pid)
    let previousWait = runQueueWaitSeconds(pid)
    await load.call('start')
    const started = Date.now()
    let previousAt = started
    const samples: ServerSample[] = []
    const fds: SoakReport['fds'] = { start: {}, end: {} }
    for (let i = 1; ; i++) {
      await sleep(started + i * SAMPLE_SECONDS * 1000 - Date.now())
      if (Date.now() - started > durationMs) break
      const m = readMetrics(await scrape(server), pid)
      // The interval ends when the scrape is answered (CPU seconds are read then), and so does the wait.
      const now = Date.now()
      const waitNow = runQueueWaitSeconds(pid)
      const { cpuSeconds, ...values } = m
      const sample: ServerSample = {
        atS: (now - started) / 1000,
        ...values,
        cpuShare: (cpuSeconds - previous.cpuSeconds) / ((now - previousAt) / 1000),
        waitShare: (waitNow - previousWait) / ((now - previousAt) / 1000),
        sockets: await server.call<number>('sockets'),
        load: await load.call<LoadSample>('sample')
      }
      previous = m
      previousAt = now
      previousWait = waitNow
      if (sample.atS * 1000 >= warmupMs) {
        const kinds = fdKinds(pid, serverPort, dbPort)
        if (Object.keys(fds.start).length === 0) fds.start = kinds
        fds.end = kinds
      }
      if (i % gcEvery === 0) {
        sample.heapAfterGcMiB = (await server.call<NodeJS.MemoryUsage>('gc')).heapUsed / MiB
        // Resets the lag histogram past the gc's pause; the next sample's lag is the load's alone.
        previous = readMetrics(await scrape(server), pid)
        previousAt = Date.now()
        previousWait = runQueueWaitSeconds(pid)
        log(`soak ${(sample.atS / 60).toFixed(1)}/${minutes} min: RSS ${sample.rssMiB.toFixed(1)} MiB, heap after gc ${sample.heapAfterGcMiB.toFixed(1)} MiB, ` +
          `fds ${sample.openFds}, lag p99 ${sample.lagP99Ms.toFixed(1)} ms, sockets ${sample.sockets}, errors ${sample.load.errors}`)
      }
      samples.push(sample)
    }
    const final = await load.call<{ errors: Errors, counts: SoakReport['totals'] }>('stop', {}, DRAIN_MS + 30_000)
    const stoppedAt = Date.now()
    await load.call('disconnect')
    await quiesce(server)
    // Past the recovery window every broadcast of the run has been dropped: what is left is kept for good.
    await sleep(stoppedAt + IDLE_TAIL_MS - Date.now())
    const idleAfter = await idleMemory(server)

    return summarise({
      minutes,
      warmupSeconds: warmupMs / 1000,
      server: { label: 'B', description: VARIANT_DESCRIPTIONS.B, overlay: OVERLAY, ...git },
      params: {
        idle: IDLE, relaySockets: RELAY_SOCKETS, roomSize: ROOM_SIZE, relayRate: RELAY_RATE, churnRate: CHURN_RATE, churnLifetimeMs: CHURN_LIFETIME_MS,
        churnRooms: CHURN_ROOMS, churnSubs: CHURN_SUBS, tokenRate: TOKEN_RATE, refreshSeconds: REFRESH_SECONDS, sampleSeconds: SAMPLE_SECONDS,
        gcEverySamples: gcEvery, relativeBound: RELATIVE_BOUND, idleTailSeconds: IDLE_TAIL_MS / 1000
      },
      fds,
      errors: final.errors,
      totals: final.counts,
      idleBefore,
      idleAfter,
      samples
    })
  } finally {
    await load?.call('disconnect').catch(() => {})
    await load?.stop().catch(() => {})
  }
}

/** What a soak recorded; the rest of the report is computed from it (so a recorded soak.json can be summarised again). */
export type SoakRun = Pick<SoakReport, 'minutes' | 'warmupSeconds' | 'server' | 'params' | 'fds' | 'errors' | 'totals' | 'idleBefore' | 'idleAfter' | 'samples'>

/** Rates, series and their verdicts over the samples past the warm-up. */
export function summarise (run: SoakRun): SoakReport {
  const analysed = run.samples.filter((s) => s.atS >= run.warmupSeconds)
  const first = analysed[0]
  const last = analysed[analysed.length - 1]
  const spanS = (last.load.atMs - first.load.atMs) / 1000
  const rate = (key: 'connects' | 'acked' | 'deliveries' | 'tokens' | 'refreshes'): number => (last.load[key] - first.load[key]) / spanS
  const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length
  const longLived = IDLE + RELAY_SOCKETS
  const pointsOf = (key: keyof ServerSample): Point[] => analysed.map((s) => ({ atS: s.atS, value: s[key] as number }))
  return {
    ...run,
    rates: [
      { what: 'churned connections (connect, join, leave after 2 s)', target: CHURN_RATE, achieved: rate('connects'), unit: '/s' },
      { what: 'publishes acked', target: RELAY_RATE, achieved: rate('acked'), unit: 'msg/s' },
      { what: 'deliveries', target: RELAY_RATE * (ROOM_SIZE - 1), achieved: rate('deliveries'), unit: '/s' },
      { what: 'POST /auth/token (200)', target: TOKEN_RATE, achieved: rate('tokens'), unit: '/s' },
      { what: 'auth:refresh on long-lived sockets', target: longLived / REFRESH_SECONDS, achieved: rate('refreshes'), unit: '/s' }
    ],
    series: [
      ...SERIES.map((spec) => analyse(spec, pointsOf(spec.key))),
      analyse(LAG_LESS_WAIT, lagLessWait(analysed))
    ].filter((r) => r !== undefined),
    serverCpuShare: mean(analysed.map((s) => s.cpuShare)),
    serverWaitShare: { mean: mean(analysed.map((s) => s.waitShare)), max: Math.max(...analysed.map((s) => s.waitShare)) },
    loadCpuShare: mean(analysed.map((s) => s.load.loadCpuShare)),
    loadWaitShare: mean(analysed.map((s) => s.load.loadWaitShare)),
    latencyP99Ms: {
      connect: median(analysed.map((s) => s.load.connectP99Ms)),
      ack: median(analysed.map((s) => s.load.ackP99Ms)),
      token: median(analysed.map((s) => s.load.tokenP99Ms))
    },
    errorTotal: errorCount(run.errors)
  }
}

/**
 * Event-loop lag p99 less what the server's run-queue wait explains: lag −
 * b·(wait − mean wait), b the least-squares coefficient of lag on wait. On a
 * shared machine the lag follows the time other processes hold CPU 0; a slope
 * left in this series is the server's own.
 */
function lagLessWait (samples: ServerSample[]): Point[] {
  const usable = samples.filter((s) => Number.isFinite(s.lagP99Ms) && Number.isFinite(s.waitShare))
  if (usable.length < 3) return []
  const fit = linearFit(usable.map((s) => s.waitShare), usable.map((s) => s.lagP99Ms))
  const meanWait = usable.reduce((a, s) => a + s.waitShare, 0) / usable.length
  return usable.map((s) => ({ atS: s.atS, value: s.lagP99Ms - fit.slope * (s.waitShare - meanWait) }))
}

// ---- report ----

const fixed = (v: number, digits = 2): string => Number.isFinite(v) ? v.toFixed(digits) : 'n/a'
const signedFixed = (v: number, digits = 2): string => `${v >= 0 ? '+' : ''}${fixed(v, digits)}`

/** Per-series lines for the console. */
export function soakSummary (report: SoakReport): string[] {
  return report.series.map((s) =>
    `soak ${s.label}: ${fixed(s.start)} → ${fixed(s.end)} ${s.unit}, slope ${signedFixed(s.slopePer10Min, 3)} ${s.unit}/10 min (±${fixed(s.slopeSePer10Min, 3)}, bound ${fixed(s.boundPer10Min)}): ${s.verdict}`)
    .concat([`soak server CPU ${(report.serverCpuShare * 100).toFixed(0)}%, run-queue wait ${(report.serverWaitShare.mean * 100).toFixed(1)}% (max ${(report.serverWaitShare.max * 100).toFixed(0)}%)`])
    .concat([`soak errors: ${report.errorTotal}${report.errorTotal > 0 ? ` ${JSON.stringify(report.errors)}` : ''}`])
}

function markdown (report: SoakReport, meta: Record<string, unknown>): string {
  const lines: string[] = []
  const r = report
  lines.push('# Spark Gateway soak (latest soak run)', '')
  lines.push(`Run with \`BENCH_ONLY=soak make bench\` (BENCH_SOAK_MINUTES=${r.minutes}) on ${String(meta.date)}: Node ${String(meta.node)}, ${String(meta.cpus)} CPUs, ${String(meta.pinning)}; ` +
    `server ${String(meta.servers)}, at commit ${r.server.commit}${r.server.srcChanges.length > 0 ? ` with ${r.server.srcChanges.length} uncommitted file(s) in src/ (the shared tree as it was; listed in soak.json)` : ''}.` +
    `${typeof meta.note === 'string' ? ` ${meta.note}` : ''}`, '')
  lines.push(`Server: ${r.server.label}, ${r.server.description}; a fresh process for the soak, with ${Object.entries(r.server.overlay).map(([k, v]) => `${k}=${v}`).join(', ')}. JWT_TTL is the default (900 s).`, '')
  lines.push(`Load, steady for the whole run (open-loop schedules in one load generator on the load CPU): ${IDLE} idle sockets, each alone in a room; ` +
    `${RELAY_SOCKETS} relay sockets in rooms of ${ROOM_SIZE} publishing ${RELAY_RATE} msg/s between them; ${CHURN_RATE} connections/s that connect with a token, join one of ${CHURN_ROOMS} rooms and leave ${CHURN_LIFETIME_MS / 1000} s later; ` +
    `${TOKEN_RATE} POST /auth/token/s (X-API-Key, body { sub }), whose tokens the ${IDLE + RELAY_SOCKETS} long-lived sockets swap in with auth:refresh every ${REFRESH_SECONDS / 60} min and the churned sockets connect with.`, '')
  lines.push('| load | target | achieved (analysed span) |', '|---|---:|---:|')
  for (const x of r.rates) lines.push(`| ${x.what} | ${fixed(x.target, 1)} ${x.unit} | ${fixed(x.achieved, 1)} ${x.unit} |`)
  lines.push('')
  lines.push(`Server CPU ${(r.serverCpuShare * 100).toFixed(0)}% of a core on average, waiting for it (other processes on CPU 0) ${(r.serverWaitShare.mean * 100).toFixed(1)}% of the time on average and up to ${(r.serverWaitShare.max * 100).toFixed(0)}% in one interval; ` +
    `load generator ${(r.loadCpuShare * 100).toFixed(0)}% (+ ${(r.loadWaitShare * 100).toFixed(1)}% waiting). p99 (median over ${SAMPLE_SECONDS} s intervals): ` +
    `connect ${fixed(r.latencyP99Ms.connect, 1)} ms, publish ack ${fixed(r.latencyP99Ms.ack, 1)} ms (from the intended send time), token ${fixed(r.latencyP99Ms.token, 1)} ms.`, '')
  lines.push(`Samples every ${SAMPLE_SECONDS} s; the first ${r.warmupSeconds.toFixed(0)} s (2 minutes, or 10% of a shorter run) are left out of the slopes. Start and end are the medians of the first and last few analysed samples.`, '')
  lines.push('| series | start | end | min–max | slope per 10 min (± s.e.) | second half alone | flat bound | verdict |', '|---|---:|---:|---:|---:|---:|---:|---|')
  for (const s of r.series) {
    lines.push(`| ${s.label}${s.unit !== '' ? ` (${s.unit})` : ''} | ${fixed(s.start)} | ${fixed(s.end)} | ${fixed(s.min)}–${fixed(s.max)} | ${signedFixed(s.slopePer10Min, 3)} (±${fixed(s.slopeSePer10Min, 3)}) | ` +
      `${signedFixed(s.secondHalfSlopePer10Min, 3)} (±${fixed(s.secondHalfSlopeSePer10Min, 3)}) | ${fixed(s.boundPer10Min)} | ${s.verdict} |`)
  }
  lines.push('')
  const connectsPer10Min = CHURN_RATE * 600
  const rss = r.series.find((s) => s.key === 'rssMiB')
  const heap = r.series.find((s) => s.key === 'heapAfterGcMiB')
  lines.push(`Flat: a slope per 10 min under ${RELATIVE_BOUND * 100}% of the series' mean or under its absolute floor (1 MiB for RSS and heap, 0.5 MiB for heap after gc and external memory, 3 fds, handles or sockets, 1 ms of lag), whichever is larger; ` +
    'a slope above it counts as growth only when it is more than twice its standard error (the noise of the sawtooth could give it otherwise). ' +
    `Why 2%: at ${CHURN_RATE} churned connections/s (${connectsPer10Min.toLocaleString('en-US')} per 10 min) and ~${(TOKEN_RATE * 600).toLocaleString('en-US')} tokens per 10 min, ` +
    `${rss !== undefined ? `the RSS bound (${fixed(rss.boundPer10Min)} MiB) is ${Math.round(rss.boundPer10Min * MiB / connectsPer10Min)} bytes per churned connection` : ''}` +
    `${heap !== undefined ? `, the heap-after-gc bound (${fixed(heap.boundPer10Min)} MiB) ${Math.round(heap.boundPer10Min * MiB / connectsPer10Min)} bytes` : ''}: ` +
    'a leak of a connection\'s socket, its handshake or its audit row (kilobytes each) would be several times over it, while the page-level steps of RSS and the heap between collections stay under it over a 30-minute run.', '')
  const kinds = [...new Set([...Object.keys(r.fds.start), ...Object.keys(r.fds.end)])].sort()
  lines.push('The server\'s file descriptors by kind, at the first analysed sample and at the last (/proc/<pid>/fd, sockets matched in /proc/<pid>/net/tcp):', '')
  lines.push('| kind | start | end |', '|---|---:|---:|')
  for (const kind of kinds) lines.push(`| ${kind} | ${r.fds.start[kind] ?? 0} | ${r.fds.end[kind] ?? 0} |`)
  lines.push('', 'TCP from clients counts the websockets and the HTTP keep-alive connections (the token requests\' and the /metrics scrapes\'); PostgreSQL\'s pool opens up to 10 connections as it needs them and closes them after 60 s idle (src/plugins/db.ts).', '')
  const tailS = r.params.idleTailSeconds as number
  lines.push(`Idle server, heap after gc: before the load ${fixed(r.idleBefore.heapAfterGcMiB)} MiB (RSS ${fixed(r.idleBefore.rssMiB)} MiB, ${r.idleBefore.openFds} fds); ` +
    `after it, every socket gone, ${tailS} s after the load stopped (recovery keeps packets ${RECOVERY_MS / 1000} s and socket.io-adapter drops expired ones once a minute: ` +
    `${tailS * 1000 >= IDLE_TAIL_MS ? 'none is left' : 'up to a minute\'s worth may be left'}), ${fixed(r.idleAfter.heapAfterGcMiB)} MiB (RSS ${fixed(r.idleAfter.rssMiB)} MiB, ${r.idleAfter.openFds} fds).`, '')
  lines.push(`Errors seen by the load generators: ${r.errorTotal}${r.errorTotal > 0 ? '' : ' (none)'}. ` +
    `Refused connects ${JSON.stringify(r.errors.refused)}, failed connects ${r.errors.connectErrors}, churned sockets dropped early ${r.errors.churnDropped}, long-lived sockets lost ${r.errors.longLivedLost}, ` +
    `joins refused ${r.errors.joinRefused}, publishes refused ${r.errors.publishRefused}, publishes not delivered to every member ${r.errors.lostDeliveries}, token answers not 200 ${JSON.stringify(r.errors.tokenStatus)}, ` +
    `token requests failed ${r.errors.tokenNetworkErrors}, refreshes refused ${r.errors.refreshRefused}; most work held back at once (the server stalled the schedule): connects ${r.errors.connectBacklog}, publishes ${r.errors.publishBacklog}, tokens ${r.errors.tokenBacklog}.`, '')
  lines.push(`Totals: ${r.totals.connects.toLocaleString('en-US')} churned connections, ${r.totals.acked.toLocaleString('en-US')} publishes (${r.totals.deliveries.toLocaleString('en-US')} deliveries), ${r.totals.tokens.toLocaleString('en-US')} tokens, ${r.totals.refreshes.toLocaleString('en-US')} refreshes.`, '')
  lines.push('Where each series comes from:', '')
  for (const s of r.series) lines.push(`- ${s.label}: ${s.source}`)
  lines.push(`- wait (below): ${WAIT_SOURCE}; event-loop lag follows it on a shared machine.`)
  lines.push('- The forced gc once a minute (for the heap-after-gc series) makes V8 compact more often than it would; the scrape right after it is discarded, so its pause is not in the lag series.', '')
  lines.push(`Every ${r.params.gcEverySamples as number * SAMPLE_SECONDS} s (the samples that take the forced gc):`, '')
  lines.push('| min | RSS MiB | heap MiB | heap after gc MiB | fds | lag p99 ms | handles | sockets | server CPU | wait | connects/s | msg/s | tokens/s |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  let prev: ServerSample | undefined
  for (const s of r.samples) {
    if (s.heapAfterGcMiB === undefined) continue
    const dt = prev === undefined ? s.load.atMs / 1000 : (s.load.atMs - prev.load.atMs) / 1000
    const per = (key: 'connects' | 'acked' | 'tokens'): string => fixed((s.load[key] - (prev?.load[key] ?? 0)) / dt, 1)
    lines.push(`| ${fixed(s.atS / 60, 1)} | ${fixed(s.rssMiB, 1)} | ${fixed(s.heapUsedMiB, 1)} | ${fixed(s.heapAfterGcMiB)} | ${s.openFds} | ${fixed(s.lagP99Ms, 1)} | ${fixed(s.activeHandles, 0)} | ${s.sockets} | ` +
      `${(s.cpuShare * 100).toFixed(0)}% | ${(s.waitShare * 100).toFixed(1)}% | ${per('connects')} | ${per('acked')} | ${per('tokens')} |`)
    prev = s
  }
  return lines.join('\n')
}

/** Writes bench/results/soak.json (every sample) and soak.md. */
export function writeSoakReport (report: SoakReport, meta: Record<string, unknown>): void {
  mkdirSync(RESULTS, { recursive: true })
  // One line a sample, so that the file reads (and diffs) as a table.
  const { samples, ...rest } = report
  const head = JSON.stringify({ meta, ...rest }, null, 2)
  writeFileSync(`${RESULTS}soak.json`, `${head.slice(0, -2)},\n  "samples": [\n${samples.map((s) => `    ${JSON.stringify(s)}`).join(',\n')}\n  ]\n}\n`)
  writeFileSync(`${RESULTS}soak.md`, `${markdown(report, meta)}\n`)
}

if (isEntry(import.meta.url)) loadGenerator()
