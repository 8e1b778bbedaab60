// Scenario 1: POST /auth/token. autocannon (CONNECTIONS keep-alive connections)
// runs in the load-generator process against each variant, with the key in
// X-API-Key and no body. Cases:
//   valid    a key the server has cached (A: a bare route that signs the same claims, no key at all)
//   invalid  an existing key id with a wrong secret: 401
//   limited  a server started with RATE_LIMIT_TOKEN=1/hour whose bucket is spent first: 429
//   cold     keys made through the admin API just before the window, each used once (B only)
// Every response of a measured window must carry the case's status, else the run fails.
// The server's window covers the requests and the audit rows it deferred for them.
import { randomBytes, randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { profilePair, profileWindow, type ProfiledWindow } from '../lib/profiled-window.js'
import { isEntry, serveLoadGenerator, VARIANT_DESCRIPTIONS, windowStart, windowStop, type BenchSettings, type Metric, type ScenarioResult, type ServerSet, recordTrial, cpuShares } from '../lib/scenario.js'
import { summarize, trialOrder } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'

const FILE = fileURLToPath(import.meta.url)
const CONNECTIONS = 10
const RATE_LIMITED = { RATE_LIMIT_TOKEN: '1/hour' }

// ---- load-generator side ----

interface AutocannonRequest { headers?: Record<string, string> }
interface AutocannonResult {
  requests: { total: number }
  latency: { p50: number, p99: number }
  statusCodeStats: Record<string, { count: number }>
  errors: number
  timeouts: number
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>
// autocannon ships no types; without a callback its programmatic API returns a promise of the result.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

interface Measurement {
  requests: number
  seconds: number
  p50Ms: number
  p99Ms: number
  statusCounts: Record<string, number>
  errors: number
  timeouts: number
  /** Keys the cold run handed to autocannon (at most one request each). */
  keysUsed: number
  loadCpuShare: number
  loadWaitShare: number
}

interface MeasureArgs {
  url: string
  /** One key for every request, for `seconds`… */
  apiKey?: string
  seconds?: number
  /** …or one request per key, each key once (the cold case). */
  keys?: string[]
  amount?: number
}

async function measure (args: MeasureArgs): Promise<Measurement> {
  const options: Record<string, unknown> = { url: `${args.url}/auth/token`, method: 'POST', connections: CONNECTIONS }
  let keysUsed = 0
  const { keys } = args
  if (keys !== undefined) {
    // autocannon builds each request before sending it (one per connection up front), so every build takes the next key.
    options.amount = args.amount
    options.requests = [{
      setupRequest: (req: AutocannonRequest) => {
        const key = keys[Math.min(keysUsed++, keys.length - 1)]
        return { ...req, headers: { ...req.headers, 'x-api-key': key } }
      }
    }]
  } else {
    options.headers = { 'x-api-key': args.apiKey ?? '' }
    options.duration = args.seconds
  }
  const usage = usageNow()
  const started = performance.now()
  const result = await autocannon(options)
  const seconds = (performance.now() - started) / 1000
  const { cpuShare, waitShare } = usageSince(usage)
  return {
    requests: result.requests.total,
    seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    statusCounts: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count])),
    errors: result.errors,
    timeouts: result.timeouts,
    keysUsed,
    loadCpuShare: cpuShare,
    loadWaitShare: waitShare
  }
}

function loadGenerator (): void {
  serveLoadGenerator({ measure })
}

// ---- orchestrator side ----

interface TokenCase {
  name: 'valid' | 'invalid' | 'limited' | 'cold'
  title: string
  labels: string[]
  status: number
  config?: Record<string, string>
}

const CASES: TokenCase[] = [
  { name: 'valid', title: 'valid key', labels: ['A', 'B', 'C', 'Ck'], status: 200 },
  { name: 'invalid', title: 'invalid key (401)', labels: ['B', 'C', 'Ck'], status: 401 },
  { name: 'limited', title: 'rate limited (429)', labels: ['B', 'C'], status: 429, config: RATE_LIMITED },
  { name: 'cold', title: 'cold key (PostgreSQL lookup)', labels: ['B'], status: 200 }
]

/** The same key id with another secret of the same length: found, then refused. */
function wrongSecret (apiKey: string): string {
  const end = apiKey.indexOf('_', 4)
  return `${apiKey.slice(0, end + 1)}${randomBytes(32).toString('base64url')}`
}

/** Fails the run when any response of a window is not the case's status (or none came back). */
function assertStatuses (c: TokenCase, label: string, m: Measurement): void {
  const unexpected = Object.entries(m.statusCounts).filter(([code]) => Number(code) !== c.status)
  const answered = Object.values(m.statusCounts).reduce((a, b) => a + b, 0)
  if (m.requests === 0 || answered === 0 || unexpected.length > 0 || m.errors > 0 || m.timeouts > 0) {
    throw new Error(`token scenario, ${c.title} on ${label}: every response should be ${c.status}; got statuses ${JSON.stringify(m.statusCounts)}, ` +
      `${m.errors} errors, ${m.timeouts} timeouts over ${m.requests} requests`)
  }
}

interface Rig { server: ServerHandle, apiKey: string }

/** The server's bench key; A checks no key and gets one of the same form, so its requests are the same bytes. */
async function keyOf (server: ServerHandle): Promise<string> {
  return server.label === 'A' ? `spk_${randomUUID()}_${randomBytes(32).toString('base64url')}` : await server.call<string>('apiKey')
}

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const coldKeys = settings.quick ? 1000 : 3000
  const load: LoadHandle = await startLoad(FILE)
  // Per case and variant: the figures of each trial.
  const series: Record<string, Record<string, Record<string, number[]>>> = {}
  const trials: Array<Record<string, unknown>> = []
  try {
    for (const c of CASES) {
      const rigs = new Map<string, Rig>()
      for (const label of c.labels) {
        const server = await servers.get(label, c.config)
        const apiKey = await keyOf(server)
        rigs.set(label, { server, apiKey: c.name === 'invalid' ? wrongSecret(apiKey) : apiKey })
      }

      /** One window of the case on one variant: set-up outside it, the requests and their deferred writes inside. */
      const window = async (label: string, seconds: number): Promise<{ m: Measurement, cpuUs: number, elapsedUs: number, runQueueWaitUs: number }> => {
        const { server, apiKey } = rigs.get(label)!
        const args: MeasureArgs = { url: server.url, apiKey, seconds }
        if (c.name === 'cold') {
          const amount = Math.max(CONNECTIONS * 20, Math.round(coldKeys * Math.min(1, seconds / settings.seconds)))
          args.keys = await server.call<string[]>('coldKeys', { count: amount + CONNECTIONS }, 300_000)
          args.amount = amount
        }
        await server.call('settle')
        await windowStart(server)
        const m = await load.call<Measurement>('measure', args, 300_000)
        await server.call('settle')
        const w = await windowStop(server)
        assertStatuses(c, label, m)
        if (args.keys !== undefined && m.keysUsed > args.keys.length) throw new Error(`token scenario, cold keys: ${m.keysUsed} requests built for ${args.keys.length} keys`)
        return { m, ...w }
      }

      for (const label of c.labels) {
        if (c.name === 'limited') {
          // Spend the bucket: the first request of the hour is 200, every later one 429.
          const { server, apiKey } = rigs.get(label)!
          const first = await fetch(`${server.url}/auth/token`, { method: 'POST', headers: { 'x-api-key': apiKey } })
          await first.arrayBuffer()
          if (first.status !== 200 && first.status !== 429) throw new Error(`token scenario: ${label} answered ${first.status} to the request that spends its limit`)
        }
        await window(label, settings.warmupSeconds)
      }

      for (let t = 0; t < settings.trials; t++) {
        for (const label of trialOrder(c.labels, t)) {
          const r = await window(label, settings.seconds)
          const values = {
            requestsPerSec: r.m.requests / r.m.seconds,
            p50Ms: r.m.p50Ms,
            p99Ms: r.m.p99Ms,
            cpuUsPerRequest: r.cpuUs / r.m.requests,
            requestsPerCpuSecond: r.m.requests / (r.cpuUs / 1e6),
            serverCpuShare: r.cpuUs / r.elapsedUs,
            serverWaitShare: r.runQueueWaitUs / r.elapsedUs,
            loadCpuShare: r.m.loadCpuShare,
            loadWaitShare: r.m.loadWaitShare
          }
          recordTrial((series[c.name] ??= {}), label, values)
          trials.push({ case: c.name, trial: t, variant: label, ...values, requests: r.m.requests, statusCounts: r.m.statusCounts })
        }
      }
    }
  } finally {
    await load.stop().catch(() => {})
  }

  const metricsOf = (c: TokenCase): Metric[] => {
    const by = (name: string): Metric['byVariant'] => Object.fromEntries(c.labels.map((l) => [l, summarize(series[c.name][l][name])]))
    const metric = (key: string, label: string, unit: string, better: Metric['better'], goal?: Metric['goal']): Metric =>
      ({ key: `${c.name}.${key}`, label: `${c.title}: ${label}`, unit, better, byVariant: by(key), ...(goal !== undefined ? { goal } : {}) })
    const valid = c.name === 'valid'
    const cost = 'per token, helmet\'s headers, the attempt\'s audit row and log line, the key check, route metrics and admit (SPEC §3/§7 features), in µs under "Profile: where B\'s CPU per token goes"'
    return [
      metric('requestsPerSec', 'requests/s', '/s', 'higher',
        valid ? { op: '>=', value: 0.8, text: '/auth/token throughput ≥ 0.8× the bare fast-jwt route (B/A)', of: 'B', to: 'A', cost } : undefined),
      metric('p50Ms', 'latency p50', 'ms', 'lower'),
      metric('p99Ms', 'latency p99', 'ms', 'lower'),
      metric('cpuUsPerRequest', 'server CPU per request', 'µs', 'lower',
        valid ? { op: '>=', value: 0.8, text: '/auth/token CPU per token within 1/0.8 of the bare route (A/B ≥ 0.8)', of: 'A', to: 'B', cost } : undefined),
      ...(valid
        ? [metric('requestsPerCpuSecond', 'tokens per server CPU-second', '/s', 'higher',
            { op: '>=', value: 3, text: '/auth/token throughput per server core ≥ 3× the classic stack with a KeyObject secret (B/Ck)', of: 'B', to: 'Ck', cost: `${cost}; Ck (Express) does none of these` })]
        : [])
    ]
  }

  return {
    name: 'token',
    title: `POST /auth/token: autocannon, ${CONNECTIONS} connections, X-API-Key header, no body`,
    params: { connections: CONNECTIONS, seconds: settings.seconds, trials: settings.trials, coldKeysPerWindow: coldKeys, rateLimited: RATE_LIMITED },
    variants: {
      A: 'bare Fastify route POST /auth/token signing the gateway\'s claims with fast-jwt createSigner (HS256); no key check, no limit, no audit (bench/lib/server.ts)',
      B: VARIANT_DESCRIPTIONS.B,
      C: VARIANT_DESCRIPTIONS.C,
      Ck: VARIANT_DESCRIPTIONS.Ck
    },
    metrics: CASES.flatMap(metricsOf),
    comparisons: [['B', 'C'], ['B', 'Ck']],
    ...cpuShares(series.valid, Object.keys(series.valid)),
    notes: [
      'Load verdicts are those of the valid-key windows.',
      'Tokens per server CPU-second (requests over the server\'s CPU time in the window) is the throughput one server core gives; requests/s also depends on the load generator and on the machine\'s other load.',
      'Invalid key: an existing key id with a wrong secret. The gateway confirms a wrong secret against its cached key with a PostgreSQL read (src/plugins/auth.ts: the cache may predate a rotation, and the round trip makes a refusal cost what an unknown id costs), and writes an audit row; the classic stack answers from its Map.',
      `Rate limited: separate B and C processes started with RATE_LIMIT_TOKEN=${RATE_LIMITED.RATE_LIMIT_TOKEN} (a config overlay), the bucket spent before the warm-up; Ck is left out (its limiter is C's, the secret is never reached).`,
      `Cold key: before each window, fresh keys are made through the gateway's admin API (POST /v1/keys); KeyStore.create does not cache what it inserts, so each key's one request reads PostgreSQL. ${coldKeys} requests a window (fewer in the warm-up), each with its own key. C and Ck keep their keys in memory and have no database: no cold case.`
    ],
    trials
  }
}

/**
 * The profile step's token load: B and A under --cpu-prof, each loaded with
 * valid-key requests by this file's load generator for a warm-up and one
 * measured window (`seconds`), then stopped; their main-thread profiles are
 * kept as `<dir>/token-{gateway,baseline}.cpuprofile`.
 */
export async function profileToken (settings: BenchSettings, scratch: string, dir: string, seconds: number): Promise<{ B: ProfiledWindow, A: ProfiledWindow }> {
  const valid = CASES.find((c) => c.name === 'valid')!
  const load = await startLoad(FILE)
  try {
    return await profilePair(scratch, 0, async (server) => {
      const apiKey = await keyOf(server)
      return await profileWindow({
        server,
        scratch,
        file: join(dir, `token-${server.kind}.cpuprofile`),
        warmupSeconds: settings.warmupSeconds,
        seconds,
        drive: async (s) => {
          const m = await load.call<Measurement>('measure', { url: server.url, apiKey, seconds: s } satisfies MeasureArgs, 300_000)
          assertStatuses(valid, server.label, m)
          return m.requests
        }
      })
    })
  } finally {
    await load.stop().catch(() => {})
  }
}

if (isEntry(import.meta.url)) loadGenerator()
