// Scenario 2: handshakes. Opens TOTAL sockets to /chat over websocket,
// CONCURRENCY connecting at a time, then closes them all (as socket.io-client's
// close(): DISCONNECT, then the transport). The server's window covers the
// opens, the closes and the audit rows the gateway writes for them.
// A second case presents tokens whose signature is wrong (B, C, Ck): every
// handshake must be refused, and the window covers the refusals and the
// closes of their transports.
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { profilePair, profileWindow, type ProfiledWindow } from '../lib/profiled-window.js'
import { isEntry, quiesce, serveLoadGenerator, VARIANT_DESCRIPTIONS, windowStart, windowStop, type BenchSettings, type Metric, type ScenarioResult, type ServerSet, releaseRigs, recordTrial, cpuShares } from '../lib/scenario.js'
import { percentile, summarize, trialOrder } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'
import { closeAll, openMany, type WireSocket } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'
const CONCURRENCY = 200
/** Sockets a cycle opens and closes. */
const cycleSize = (settings: BenchSettings): number => settings.quick ? 500 : 1000

function loadGenerator (): void {
  let tokens: Array<string | null> = []
  let badTokens: string[] = []
  serveLoadGenerator({
    tokens: (args: { tokens: Array<string | null>, badTokens: string[] }) => { tokens = args.tokens; badTokens = args.badTokens },
    /** One cycle: open `total` sockets, `concurrency` at a time, then close them (or, `refused`, see each refused). */
    cycle: async (args: { url: string, total: number, concurrency: number, refused: boolean }) => {
      const started = performance.now()
      const usage = usageNow()
      let sockets: WireSocket[]
      let latenciesMs: number[]
      let reasons: Record<string, number> = {}
      try {
        ({ sockets, latenciesMs, refusals: reasons } = args.refused
          ? await openMany(args.total, args.concurrency, (i) => ({ url: args.url, namespace: NAMESPACE, auth: { token: badTokens[i % badTokens.length] } }), { refused: true })
          : await openMany(args.total, args.concurrency, (i) => ({
            url: args.url,
            namespace: NAMESPACE,
            auth: tokens[i % tokens.length] === null ? { sub: `user-${i}` } : { token: tokens[i % tokens.length] }
          })))
      } catch (err) {
        throw new Error(`handshake failed: ${String(err)}`)
      }
      const openMs = performance.now() - started
      const { cpuShare, waitShare } = usageSince(usage)
      closeAll(sockets)
      return { openMs, loadCpuShare: cpuShare, loadWaitShare: waitShare, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99), reasons }
    }
  })
}

interface Cycle { openMs: number, loadCpuShare: number, loadWaitShare: number, p50Ms: number, p99Ms: number, reasons: Record<string, number> }

interface HandshakeCase { name: 'authorised' | 'refused', labels: string[], refused: boolean }

const CASES: HandshakeCase[] = [
  { name: 'authorised', labels: ['A', 'B', 'C', 'Ck'], refused: false },
  { name: 'refused', labels: ['B', 'C', 'Ck'], refused: true }
]

/** The same header and claims under a signature that no key made (32 random bytes, as long as an HS256 one). */
function withWrongSignature (token: string): string {
  return `${token.slice(0, token.lastIndexOf('.') + 1)}${randomBytes(32).toString('base64url')}`
}

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const total = cycleSize(settings)
  const concurrency = CONCURRENCY
  const labels = [...new Set(CASES.flatMap((c) => c.labels))]
  const rigs = new Map<string, { server: ServerHandle, load: LoadHandle }>()
  const cycle = async (label: string, refused: boolean): Promise<{ cycle: Cycle, cpuUs: number, elapsedUs: number, eventLoopUtilization: number, runQueueWaitUs: number }> => {
    const { server, load } = rigs.get(label)!
    await windowStart(server)
    const result = await load.call<Cycle>('cycle', { url: server.url, total, concurrency, refused })
    // Inside the window: the closes, down to the last transport, and the audit rows the gateway defers.
    await quiesce(server)
    const window = await windowStop(server)
    return { cycle: result, ...window }
  }
  try {
    for (const label of labels) {
      const server = await servers.get(label)
      const load = await startLoad(FILE)
      rigs.set(label, { server, load })
      const tokens = server.tokens.slice(0, total)
      const badTokens = tokens.filter((t): t is string => t !== null).map(withWrongSignature)
      await load.call('tokens', { tokens, badTokens })
    }

    // Per case and variant: the figures of each trial.
    const series: Record<string, Record<string, Record<string, number[]>>> = {}
    const trials: Array<Record<string, unknown>> = []
    for (const c of CASES) {
      for (const label of c.labels) await cycle(label, c.refused) // warm-up
      for (let t = 0; t < settings.trials; t++) {
        for (const label of trialOrder(c.labels, t)) {
          const r = await cycle(label, c.refused)
          const values = {
            handshakesPerSec: total / (r.cycle.openMs / 1000),
            p50Ms: r.cycle.p50Ms,
            p99Ms: r.cycle.p99Ms,
            cpuUsPerHandshake: r.cpuUs / total,
            serverCpuShare: r.cpuUs / r.elapsedUs,
            serverWaitShare: r.runQueueWaitUs / r.elapsedUs,
            loadCpuShare: r.cycle.loadCpuShare,
            loadWaitShare: r.cycle.loadWaitShare
          }
          recordTrial((series[c.name] ??= {}), label, values)
          trials.push({ case: c.name, trial: t, variant: label, ...values, raw: r })
        }
      }
    }

    const metricsOf = (c: HandshakeCase): Metric[] => {
      const by = (name: string): Metric['byVariant'] => Object.fromEntries(c.labels.map((l) => [l, summarize(series[c.name][l][name])]))
      // The authorised case keeps the keys it always had (latest.json readers), the refused one is prefixed.
      const key = (name: string): string => c.refused ? `refused.${name}` : name
      const what = c.refused ? 'refused (wrong signature): ' : ''
      return [
        { key: key('handshakesPerSec'), label: `${what}handshakes/s`, unit: '/s', better: 'higher', byVariant: by('handshakesPerSec') },
        { key: key('p50Ms'), label: `${what}handshake latency p50`, unit: 'ms', better: 'lower', byVariant: by('p50Ms') },
        { key: key('p99Ms'), label: `${what}handshake latency p99`, unit: 'ms', better: 'lower', byVariant: by('p99Ms') },
        {
          key: key('cpuUsPerHandshake'),
          label: `${what}server CPU per handshake (open+${c.refused ? 'refusal+close' : 'close'})`,
          unit: 'µs',
          better: 'lower',
          byVariant: by('cpuUsPerHandshake'),
          ...(c.refused ? {} : { goal: { op: '<=' as const, value: 1.15, text: 'handshake CPU ≤ 1.15× bare (B/A)', cost: 'JWT verification (Ck pays it too), the attempt\'s audit row and log line, the gates and per-socket protocol (packet gate, key and user rooms, expiry watch), in µs under "Profile: where B\'s CPU per handshake goes"' } })
        }
      ]
    }
    return {
      name: 'handshakes',
      title: `Handshakes: ${total} websocket sockets to /chat, ${concurrency} connecting at a time, then closed`,
      params: { total, concurrency, trials: settings.trials },
      variants: Object.fromEntries(labels.map((l) => [l, VARIANT_DESCRIPTIONS[l]])),
      metrics: CASES.flatMap(metricsOf),
      comparisons: [['B', 'C'], ['B', 'Ck']],
      ...cpuShares(series.authorised, Object.keys(series.authorised)),
      notes: [
        'CPU per handshake covers the whole cycle in the server process: open, close, and for B the audit rows it sends to PostgreSQL (whose own work runs on the load CPU, outside the measure).',
        'Handshakes/s counts the opening phase only; the window\'s CPU share is diluted by the close and settle phases. Load verdicts are those of the authorised case.',
        'C and Ck verify with jsonwebtoken.verify (HS256, issuer, audience) in an io.of(\'/chat\').use() middleware; their tokens are minted by the reference server itself.',
        'Refused: each variant\'s own tokens with the signature replaced by 32 random bytes; every handshake must end in CONNECT_ERROR (the run fails otherwise), after which the client closes its transport.'
      ],
      trials
    }
  } finally {
    await releaseRigs(rigs.values())
  }
}

/**
 * The profile step's handshake load: B and A under --cpu-prof, each given a
 * warm-up and one measured window of whole authorised cycles (as the
 * scenario's, each quiesced before the next) for at least `seconds`, then
 * stopped; their main-thread profiles are kept as `<dir>/handshakes-{gateway,baseline}.cpuprofile`.
 */
export async function profileHandshakes (settings: BenchSettings, scratch: string, dir: string, seconds: number): Promise<{ B: ProfiledWindow, A: ProfiledWindow }> {
  const total = cycleSize(settings)
  const load = await startLoad(FILE)
  try {
    return await profilePair(scratch, total, async (server) => {
      await load.call('tokens', { tokens: server.tokens.slice(0, total), badTokens: [] })
      return await profileWindow({
        server,
        scratch,
        file: join(dir, `handshakes-${server.kind}.cpuprofile`),
        warmupSeconds: settings.warmupSeconds,
        seconds,
        drive: async (s) => {
          const end = performance.now() + s * 1000
          let ops = 0
          do {
            await load.call<Cycle>('cycle', { url: server.url, total, concurrency: CONCURRENCY, refused: false })
            await quiesce(server)
            ops += total
          } while (performance.now() < end)
          return ops
        }
      })
    })
  } finally {
    await load.stop().catch(() => {})
  }
}

if (isEntry(import.meta.url)) loadGenerator()
