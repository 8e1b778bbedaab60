// Scenario 3: idle memory. COUNT authorised sockets on /chat (websocket
// transport) sit idle; the server forces a full gc before and after they
// connect, and the growth of RSS and heapUsed is divided by COUNT.
// Above 20,000 sockets the load generator spreads them over source addresses
// 127.0.0.1, .2, … (ephemeral ports run out near 28k per address), and both
// processes get their open-file limit raised to fit (prlimit; root may raise the hard limit).
import { spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { isEntry, quiesce, serveLoadGenerator, VARIANT_DESCRIPTIONS, type BenchSettings, type ScenarioResult, type ServerSet, byVariant, releaseRigs, type Series, recordTrial } from '../lib/scenario.js'
import { sleep, trialOrder, waitFor } from '../lib/stats.js'
import { closeAll, openMany, SOCKETS_PER_SOURCE_ADDRESS, sourceAddress, type WireSocket } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'

function loadGenerator (): void {
  let sockets: WireSocket[] = []
  serveLoadGenerator({
    open: async (args: { url: string, tokens: Array<string | null> }) => {
      const count = args.tokens.length
      const opened = await openMany(count, 200, (i) => {
        const localAddress = sourceAddress(i, count)
        return {
          url: args.url,
          namespace: NAMESPACE,
          auth: args.tokens[i] === null ? { sub: `user-${i}` } : { token: args.tokens[i] },
          ...(localAddress !== undefined ? { localAddress } : {})
        }
      })
      sockets = opened.sockets
      return sockets.length
    },
    closeAll: () => { closeAll(sockets); sockets = [] }
  })
}

type Memory = NodeJS.MemoryUsage

export const IDLE_SOCKETS = 10_000
export const IDLE_SOCKETS_QUICK = 1000

/** Open files a process may hold (its soft RLIMIT_NOFILE), from /proc. */
function fileLimit (pid: number): number {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
  const soft = line?.split(/\s+/)[3]
  return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft)
}

/**
 * Raises a child's open-file limit to `needed` when it is lower (Node raises
 * its soft limit to the hard one at start; here, typically 20,000). Needs
 * prlimit, and root (or a high enough hard limit) to go past the hard limit.
 */
function ensureFileLimit (child: ChildProcess, needed: number, what: string): void {
  if (child.pid === undefined || fileLimit(child.pid) >= needed) return
  const res = spawnSync('prlimit', ['--pid', String(child.pid), `--nofile=${needed}:${needed}`], { encoding: 'utf8' })
  if (res.status !== 0 || fileLimit(child.pid) < needed) {
    throw new Error(`${what} may open only ${fileLimit(child.pid)} files, ${needed} needed: raise it (ulimit -Hn, as root) or lower the count (${res.stderr ?? ''})`)
  }
}

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const count = settings.quick ? IDLE_SOCKETS_QUICK : IDLE_SOCKETS
  const trialsPerVariant = settings.quick ? 1 : settings.trials
  const labels = ['A', 'B']
  const rigs = new Map<string, { server: ServerHandle, load: LoadHandle, tokens: Array<string | null> }>()
  try {
    for (const label of labels) {
      const server = await servers.get(label)
      const load = await startLoad(FILE)
      // One descriptor per socket on each side, plus the process's own (modules, IPC, database pool).
      ensureFileLimit(server.child, count + 1024, `server ${label}`)
      ensureFileLimit(load.child, count + 1024, `load generator for ${label}`)
      rigs.set(label, { server, load, tokens: server.tokens.slice(0, count) })
      if (server.tokens.length < count) throw new Error(`${label} minted ${server.tokens.length} tokens, ${count} needed`)
    }
    /** Connects every socket, reads memory after a gc, closes them; `before` is read after a gc too. */
    const cycle = async (label: string): Promise<{ before: Memory, after: Memory, openMs: number, cycleMs: number }> => {
      const { server, load, tokens } = rigs.get(label)!
      const started = performance.now()
      // Start-up (token minting) leaves audit rows and garbage: settle them before the "before" reading.
      await server.call('settle')
      const before = await server.call<Memory>('gc')
      const opening = performance.now()
      await load.call('open', { url: server.url, tokens })
      const openMs = performance.now() - opening
      await waitFor('every socket to be connected', async () => await server.call<number>('sockets') === count)
      await sleep(500)
      await server.call('settle')
      const after = await server.call<Memory>('gc')
      await load.call('closeAll')
      // Until every transport is gone too, or the next "before" would still hold some of these sockets.
      await quiesce(server)
      return { before, after, openMs, cycleMs: performance.now() - started }
    }
    // A first cycle grows each heap to its working size, so RSS growth in the trials is the sockets' own.
    // allSettled: one failing must not tear the rigs down (finally) under the other's cycle.
    const warmups = await Promise.allSettled(labels.map(async (label) => await cycle(label)))
    for (const w of warmups) if (w.status === 'rejected') throw w.reason
    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    for (let t = 0; t < trialsPerVariant; t++) {
      for (const label of trialOrder(labels, t)) {
        const { before, after, openMs, cycleMs } = await cycle(label)
        const values = {
          rssPerConnKiB: (after.rss - before.rss) / count / 1024,
          heapUsedPerConnKiB: (after.heapUsed - before.heapUsed) / count / 1024,
          externalPerConnKiB: (after.external - before.external) / count / 1024,
          rssAfterMiB: after.rss / 2 ** 20
        }
        recordTrial(series, label, values)
        trials.push({ trial: t, variant: label, ...values, before, after, openMs, cycleMs })
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
        'The per-connection figures are growth over the same process before the sockets connected (absolute RSS includes each server\'s code and, for B, its PostgreSQL pool and stores).',
        'Each server first connects and closes the same sockets once (warm-up), so RSS growth is not the heap\'s first expansion; heapUsed is the steadier figure.',
        `One lean wire client process holds every socket (one token, hence one subject, each); above ${SOCKETS_PER_SOURCE_ADDRESS.toLocaleString('en-US')} sockets it spreads them over 127.0.0.1, .2, … and raises both processes' open-file limit (prlimit).`
      ],
      trials
    }
  } finally {
    await releaseRigs(rigs.values())
  }
}

if (isEntry(import.meta.url)) loadGenerator()
