// Scenario 3: idle memory. COUNT authorised sockets on /chat (websocket
// transport) sit idle; the server forces a full gc before and after they
// connect, and the growth of RSS and heapUsed is divided by COUNT.
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { isEntry, quiesce, serveLoadGenerator, VARIANT_DESCRIPTIONS, type BenchSettings, type ScenarioResult, type ServerSet, byVariant, releaseRigs, type Series } from '../lib/scenario.js'
import { sleep, trialOrder, waitFor } from '../lib/stats.js'
import { closeAll, openMany, type WireSocket } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'

function loadGenerator (): void {
  let sockets: WireSocket[] = []
  serveLoadGenerator({
    open: async (args: { url: string, tokens: Array<string | null> }) => {
      ({ sockets } = await openMany(args.tokens.length, 200, (i) => ({
        url: args.url,
        namespace: NAMESPACE,
        auth: args.tokens[i] === null ? { sub: `user-${i}` } : { token: args.tokens[i] }
      })))
      return sockets.length
    },
    closeAll: () => { closeAll(sockets); sockets = [] }
  })
}

type Memory = NodeJS.MemoryUsage

export const IDLE_SOCKETS = 2000
export const IDLE_SOCKETS_QUICK = 1000

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const count = settings.quick ? IDLE_SOCKETS_QUICK : IDLE_SOCKETS
  const trialsPerVariant = settings.quick ? 1 : settings.trials
  const labels = ['A', 'B']
  const rigs = new Map<string, { server: ServerHandle, load: LoadHandle, tokens: Array<string | null> }>()
  try {
    for (const label of labels) {
      const server = await servers.get(label)
      rigs.set(label, { server, load: await startLoad(FILE), tokens: server.tokens.slice(0, count) })
    }
    /** Connects every socket, reads memory after a gc, closes them; `before` is read after a gc too. */
    const cycle = async (label: string): Promise<{ before: Memory, after: Memory }> => {
      const { server, load, tokens } = rigs.get(label)!
      // Start-up (token minting) leaves audit rows and garbage: settle them before the "before" reading.
      await server.call('settle')
      const before = await server.call<Memory>('gc')
      await load.call('open', { url: server.url, tokens })
      await waitFor('every socket to be connected', async () => await server.call<number>('sockets') === count)
      await sleep(500)
      await server.call('settle')
      const after = await server.call<Memory>('gc')
      await load.call('closeAll')
      // Until every transport is gone too, or the next "before" would still hold some of these sockets.
      await quiesce(server)
      return { before, after }
    }
    // A first cycle grows each heap to its working size, so RSS growth in the trials is the sockets' own.
    await Promise.all(labels.map(async (label) => await cycle(label)))
    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    for (let t = 0; t < trialsPerVariant; t++) {
      for (const label of trialOrder(labels, t)) {
        const { before, after } = await cycle(label)
        const values = {
          rssPerConnKiB: (after.rss - before.rss) / count / 1024,
          heapUsedPerConnKiB: (after.heapUsed - before.heapUsed) / count / 1024,
          externalPerConnKiB: (after.external - before.external) / count / 1024,
          rssAfterMiB: after.rss / 2 ** 20
        }
        series[label] ??= {}
        for (const [name, value] of Object.entries(values)) (series[label][name] ??= []).push(value)
        trials.push({ trial: t, variant: label, ...values, before, after })
      }
    }
    const by = byVariant(series, labels)
    return {
      name: 'idle-memory',
      title: `Idle memory: ${count} authorised websocket sockets on /chat, after a forced gc`,
      params: { count, trials: trialsPerVariant },
      variants: { A: VARIANT_DESCRIPTIONS.A, B: VARIANT_DESCRIPTIONS.B },
      metrics: [
        { key: 'rssPerConnKiB', label: 'RSS per connection', unit: 'KiB', better: 'lower', byVariant: by('rssPerConnKiB'), goal: { op: '<=', value: 1.25, text: 'B/A ≤ 1.25' } },
        { key: 'heapUsedPerConnKiB', label: 'heapUsed per connection', unit: 'KiB', better: 'lower', byVariant: by('heapUsedPerConnKiB'), goal: { op: '<=', value: 1.25, text: 'B/A ≤ 1.25' } },
        { key: 'externalPerConnKiB', label: 'external per connection', unit: 'KiB', better: 'lower', byVariant: by('externalPerConnKiB') },
        { key: 'rssAfterMiB', label: 'server RSS with the sockets', unit: 'MiB', better: 'lower', byVariant: by('rssAfterMiB') }
      ],
      serverCpuShare: {},
      notes: [
        'B\'s absolute RSS includes the embedded PGlite (DATA_DIR=memory://); the per-connection figures are growth over the same process before the sockets connected.',
        'Each server first connects and closes the same sockets once (warm-up), so RSS growth is not the heap\'s first expansion; heapUsed is the steadier figure.'
      ],
      trials
    }
  } finally {
    await releaseRigs(rigs.values())
  }
}

if (isEntry(import.meta.url)) loadGenerator()
