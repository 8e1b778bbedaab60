// Scenario 2: handshakes. Opens TOTAL sockets to /chat over websocket,
// CONCURRENCY connecting at a time, then closes them all (as socket.io-client's
// close(): DISCONNECT, then the transport). The server's window covers the
// opens, the closes and the audit rows the gateway writes for them.
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { isEntry, quiesce, serveLoadGenerator, VARIANT_DESCRIPTIONS, windowStart, windowStop, type BenchSettings, type ScenarioResult, type ServerSet, byVariant, cpuShares, releaseRigs, type Series } from '../lib/scenario.js'
import { percentile, trialOrder } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'
import { closeAll, openMany, type WireSocket } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'

function loadGenerator (): void {
  let tokens: Array<string | null> = []
  serveLoadGenerator({
    tokens: (args: { tokens: Array<string | null> }) => { tokens = args.tokens },
    /** One cycle: open `total` sockets, `concurrency` at a time, then close them. */
    cycle: async (args: { url: string, total: number, concurrency: number }) => {
      const started = performance.now()
      const usage = usageNow()
      let sockets: WireSocket[]
      let latenciesMs: number[]
      try {
        ({ sockets, latenciesMs } = await openMany(args.total, args.concurrency, (i) => ({
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
      return { openMs, loadCpuShare: cpuShare, loadWaitShare: waitShare, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99) }
    }
  })
}

interface Cycle { openMs: number, loadCpuShare: number, loadWaitShare: number, p50Ms: number, p99Ms: number }

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const total = settings.quick ? 500 : 1000
  const concurrency = 200
  const labels = ['A', 'B']
  const rigs = new Map<string, { server: ServerHandle, load: LoadHandle }>()
  const cycle = async (label: string): Promise<{ cycle: Cycle, cpuUs: number, elapsedUs: number, eventLoopUtilization: number, runQueueWaitUs: number }> => {
    const { server, load } = rigs.get(label)!
    await windowStart(server)
    const result = await load.call<Cycle>('cycle', { url: server.url, total, concurrency })
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
      await load.call('tokens', { tokens: server.tokens.slice(0, total) })
    }
    for (const label of labels) await cycle(label) // warm-up

    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    for (let t = 0; t < settings.trials; t++) {
      for (const label of trialOrder(labels, t)) {
        const r = await cycle(label)
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
        series[label] ??= {}
        for (const [name, value] of Object.entries(values)) (series[label][name] ??= []).push(value)
        trials.push({ trial: t, variant: label, ...values, raw: r })
      }
    }
    const by = byVariant(series, labels)
    return {
      name: 'handshakes',
      title: `Handshakes: ${total} websocket sockets to /chat, ${concurrency} connecting at a time, then closed`,
      params: { total, concurrency, trials: settings.trials },
      variants: { A: VARIANT_DESCRIPTIONS.A, B: VARIANT_DESCRIPTIONS.B },
      metrics: [
        { key: 'handshakesPerSec', label: 'handshakes/s', unit: '/s', better: 'higher', byVariant: by('handshakesPerSec') },
        { key: 'p50Ms', label: 'handshake latency p50', unit: 'ms', better: 'lower', byVariant: by('p50Ms') },
        { key: 'p99Ms', label: 'handshake latency p99', unit: 'ms', better: 'lower', byVariant: by('p99Ms') },
        { key: 'cpuUsPerHandshake', label: 'server CPU per handshake (open+close)', unit: 'µs', better: 'lower', byVariant: by('cpuUsPerHandshake') }
      ],
      ...cpuShares(series, labels),
      notes: [
        'CPU per handshake covers the whole cycle (open, close, and for B the audit rows flushed into the embedded PGlite, which runs inside the gateway process with DATA_DIR=memory://; with DATABASE_URL that insert work moves to PostgreSQL).',
        'Handshakes/s counts the opening phase only; the window\'s CPU share is diluted by the close and settle phases.'
      ],
      trials
    }
  } finally {
    await releaseRigs(rigs.values())
  }
}

if (isEntry(import.meta.url)) loadGenerator()
