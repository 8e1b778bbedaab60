// What every scenario shares: the run's settings, the result shape run.ts
// reports, and the load-generator side's entry point.
import { pathToFileURL } from 'node:url'
import type { LoadHandle, ServerHandle } from './processes.js'
import { serve, type Handlers } from './rpc.js'
import { sleep, summarize, waitFor, type Summary } from './stats.js'

/**
 * The servers under test, by variant label (see VARIANT_DESCRIPTIONS): each
 * starts on a scenario's first `get` and serves every later scenario, so a
 * run starts only the variants its scenarios use.
 */
export interface ServerSet {
  /** `config` overlays the server's configuration (e.g. a low RATE_LIMIT_TOKEN); each distinct overlay is its own process. */
  get: (label: string, config?: Record<string, string>) => Promise<ServerHandle>
}

/** Waits until a server has no socket left and has written what it deferred, so the next scenario starts clean. */
export async function quiesce (server: ServerHandle): Promise<void> {
  await waitFor(`${server.label} to have no sockets`, async () => await server.call<number>('sockets') === 0, 30_000)
  await waitFor(`${server.label} to have no connections`, async () => await server.call<number>('connections') === 0, 30_000)
  await server.call('settle')
}

export interface BenchSettings {
  quick: boolean
  /** Measured trials per variant (alternating A/B). */
  trials: number
  /** Length of a measured relay window, seconds. */
  seconds: number
  /** Length of a measured fan-out window, seconds. */
  fanoutSeconds: number
  /** Warm-up per server before its first trial, seconds. */
  warmupSeconds: number
  /** Also run the informational A0 variant (Socket.IO defaults, no connection-state recovery) in relay. */
  plainBaseline: boolean
}

export interface Metric {
  key: string
  label: string
  unit: string
  /** Which direction is better; ratios are always B/A. */
  better: 'higher' | 'lower'
  byVariant: Record<string, Summary>
  /**
   * The goal on a ratio (B/A unless `of`/`to` say otherwise), when the brief sets one; `cost` names where a miss goes.
   * With `absolute`, the goal is on the `of` variant's own value (e.g. an added latency in ms), not a ratio.
   */
  goal?: { op: '>=' | '<=', value: number, text: string, of?: string, to?: string, cost?: string, absolute?: boolean }
}

export interface ScenarioResult {
  name: string
  title: string
  params: Record<string, unknown>
  /** Variant label (A, B, A0) → what it is. */
  variants: Record<string, string>
  metrics: Metric[]
  /** Ratio columns beside B/A (and B/A0 when A0 ran), as [numerator, denominator] labels, e.g. ['B', 'Ck']. */
  comparisons?: Array<[string, string]>
  /** Server CPU use over each measured window, as a share of one core, per variant. */
  serverCpuShare: Record<string, number[]>
  /** Share of each window the server's event loop was runnable but waiting for its CPU (other processes on it). */
  serverWaitShare?: Record<string, number[]>
  /** The load generator's own CPU use over each window, as a share of one core, per variant. */
  loadCpuShare?: Record<string, number[]>
  /** The load generator's run-queue wait over each window, as a share of it. */
  loadWaitShare?: Record<string, number[]>
  notes: string[]
  /** Raw per-trial numbers, for latest.json. */
  trials: Array<Record<string, unknown>>
}

/** A server's CPU and wall time over a window, as bench/lib/server.ts reports it. */
export interface WindowStats {
  cpuUs: number
  userUs: number
  systemUs: number
  elapsedUs: number
  eventLoopUtilization: number
  /** Time the server's event loop was runnable but waiting for CPU 0 (other processes on it). */
  runQueueWaitUs: number
  startUs: number
  stopUs: number
  rss: number
}

export async function windowStart (server: ServerHandle): Promise<void> {
  await server.call('window:start')
}

export async function windowStop (server: ServerHandle): Promise<WindowStats> {
  return await server.call<WindowStats>('window:stop')
}

/** Whether this module is the process's entry point (so a scenario file can also be its own load generator). */
export function isEntry (moduleUrl: string): boolean {
  return process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === moduleUrl
}

/** Runs the load-generator side of a scenario: its commands over IPC, plus `close`. */
export function serveLoadGenerator (handlers: Handlers): void {
  serve({
    ...handlers,
    close: () => { setImmediate(() => process.exit(0)) }
  })
  process.send?.({ ready: true })
}

export const VARIANT_DESCRIPTIONS: Record<string, string> = {
  A: 'bare Fastify + fastify-socket.io, the gateway\'s Socket.IO options (connection-state recovery on), /chat relay, no auth',
  A0: 'as A with Socket.IO defaults (no connection-state recovery); informational',
  Ar: 'as A with @socket.io/redis-adapter on Redis',
  B: 'the gateway as one instance runs in production: build(parseConfig(DATABASE_URL, in-process limits, limits raised)), token auth, policy, packet gate, audit rows to PostgreSQL',
  Be: 'the gateway on its embedded defaults (DATA_DIR=memory://: PGlite inside the gateway process); informational',
  Br: 'the gateway with REDIS_URL (Redis adapter, shared limits and revocation) and DATABASE_URL, as each of several instances runs',
  C: 'the classic stack (bench/reference/): Express 5 + jsonwebtoken 9 (string secret) + express-rate-limit + socket.io',
  Ck: 'the classic stack as C, with a KeyObject secret (crypto.createSecretKey)'
}

/** Variant labels a run can ask for, mapped to the server process that serves them. */
export const VARIANT_LABELS = Object.keys(VARIANT_DESCRIPTIONS)

/** Per-trial figures of each variant: `series[label][metric]` holds one number a trial. */
export type Series = Record<string, Record<string, number[]>>

/** Appends one trial's figures for `label`: `series[label][metric]` gets one number more. */
export function recordTrial (series: Series, label: string, values: Record<string, number>): void {
  const perVariant = (series[label] ??= {})
  for (const [name, value] of Object.entries(values)) (perVariant[name] ??= []).push(value)
}

/** The median/min/max of one metric for every variant, as a scenario's metric table wants it. */
export function byVariant (series: Series, labels: string[]): (metric: string) => Record<string, Summary> {
  return (metric) => Object.fromEntries(labels.map((l) => [l, summarize(series[l][metric])]))
}

/** How busy server and load generator were in each variant's windows (labels runs client-bound, contended, …). */
export function cpuShares (series: Series, labels: string[]): Pick<ScenarioResult, 'serverCpuShare' | 'serverWaitShare' | 'loadCpuShare' | 'loadWaitShare'> {
  const share = (name: string): Record<string, number[]> => Object.fromEntries(labels.map((l) => [l, series[l][name]]))
  return { serverCpuShare: share('serverCpuShare'), serverWaitShare: share('serverWaitShare'), loadCpuShare: share('loadCpuShare'), loadWaitShare: share('loadWaitShare') }
}

/** A server under test and the load generator driving it. */
export interface Rig { server: ServerHandle, load: LoadHandle }

/**
 * Stops each rig's load generator and lets its server settle, whatever failed
 * before. Its clients leave first where it has them (`disconnect`: DISCONNECT,
 * then the transport), so the server keeps no recovery sessions for them.
 */
export async function releaseRigs (rigs: Iterable<Rig>): Promise<void> {
  for (const { server, load } of rigs) {
    await load.call('disconnect').catch(() => {})
    await load.stop().catch(() => {})
    await quiesce(server).catch(() => {})
  }
}

/**
 * One measured window under load: the load generator `start`s, ramps for
 * `rampMs`, then the server's CPU window and the load's `collect` cover the
 * same `seconds`. Stopping the load afterwards is the caller's (each drains its own way).
 */
export async function loadedWindow<T> (rig: Rig, start: Record<string, unknown>, seconds: number, rampMs: number, collect = 'collect'): Promise<{ window: WindowStats, collected: T }> {
  await rig.load.call('start', start)
  await sleep(rampMs)
  await Promise.all([windowStart(rig.server), rig.load.call('mark')])
  await sleep(seconds * 1000)
  const [window, collected] = await Promise.all([windowStop(rig.server), rig.load.call<T>(collect)])
  return { window, collected }
}
