// Scenario 1, the headline: closed-loop relay. N clients in one room of /chat,
// each keeping `inflight` messages outstanding (a new one on each ack), so the
// server runs as fast as it can. Metric of record: server CPU µs per publish.
import { fileURLToPath } from 'node:url'
import { startLoad, type ServerHandle } from '../lib/processes.js'
import { keepMainProfile, startProfiledServer as startProfiled } from '../lib/profiled-window.js'
import { isEntry, serveLoadGenerator, VARIANT_DESCRIPTIONS, type BenchSettings, type ScenarioResult, type ServerSet, type WindowStats, byVariant, cpuShares, type Series, recordTrial, loadedWindow, releaseRigs, type Rig } from '../lib/scenario.js'
import { percentile, summarize, trialOrder } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'
import { decodeEvent, openMany, WireSocket } from '../lib/wire.js'
import type { ServerKind } from '../lib/server.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'
const ROOM = 'bench-relay'
export const CLIENTS = 50
export const INFLIGHT = 10
/** A chat-sized message body (~100 bytes of JSON). */
const TEXT = 'The quick brown fox jumps over the lazy dog; the gateway relays it to the room.'

// ---- load-generator side (its own process, pinned to the load CPU) ----

interface LoadCounters { acked: number, refused: number, deliveries: number, latenciesMs: number[], markedAt: number }

function loadGenerator (): void {
  let sockets: WireSocket[] = []
  let running = false
  let outstanding = 0
  let drained: (() => void) | undefined
  let seq = 0
  let counters: LoadCounters = { acked: 0, refused: 0, deliveries: 0, latenciesMs: [], markedAt: performance.now() }
  let markedUsage = usageNow()
  const okPrefix = '[{"ok":true'

  function send (socket: WireSocket): void {
    const sentAt = performance.now()
    outstanding++
    socket.emit('message', { room: ROOM, data: { text: TEXT, seq: seq++ } }, (frame, start) => {
      outstanding--
      if (frame.toString('latin1', start, start + okPrefix.length) === okPrefix) {
        counters.acked++
        counters.latenciesMs.push(performance.now() - sentAt)
      } else {
        counters.refused++
      }
      if (running) send(socket)
      else if (outstanding === 0) drained?.()
    })
  }

  serveLoadGenerator({
    /** Connects the clients, joins the room and checks one relayed message end to end. */
    connect: async (args: { url: string, tokens: Array<string | null> }) => {
      ({ sockets } = await openMany(args.tokens.length, 50, (i) => ({
        url: args.url,
        namespace: NAMESPACE,
        auth: args.tokens[i] === null ? { sub: `user-${i}` } : { token: args.tokens[i] }
      })))
      for (const socket of sockets) {
        const joined = await socket.emitWithAck('join', { room: ROOM }) as { ok?: boolean }
        if (joined?.ok !== true) throw new Error(`join refused: ${JSON.stringify(joined)}`)
      }
      // One message decoded in full: the relay carries { id, room, from, data, ts } and acks { ok, id }.
      const received = new Promise<unknown[]>((resolve) => { sockets[1].onEvent = (frame) => { resolve(decodeEvent(frame, NAMESPACE)) } })
      const ack = await sockets[0].emitWithAck('message', { room: ROOM, data: { text: 'check' } }) as { ok: boolean, id: string }
      const [event, message] = await received as [string, { id: string, room: string, from: { sub: string }, data: { text: string }, ts: number }]
      if (ack.ok !== true || event !== 'message' || message.id !== ack.id || message.room !== ROOM || message.data.text !== 'check' || typeof message.ts !== 'number' || typeof message.from?.sub !== 'string') {
        throw new Error(`relay check failed: ack ${JSON.stringify(ack)}, delivery ${JSON.stringify([event, message])}`)
      }
      for (const socket of sockets) socket.onEvent = () => { counters.deliveries++ }
      return { clients: sockets.length }
    },
    start: (args: { inflight: number }) => {
      running = true
      for (const socket of sockets) for (let i = 0; i < args.inflight; i++) send(socket)
    },
    mark: () => {
      counters = { acked: 0, refused: 0, deliveries: 0, latenciesMs: [], markedAt: performance.now() }
      markedUsage = usageNow()
    },
    collect: () => {
      const c = counters
      const usage = usageSince(markedUsage)
      return {
        elapsedMs: performance.now() - c.markedAt,
        loadCpuShare: usage.cpuShare,
        loadWaitShare: usage.waitShare,
        acked: c.acked,
        refused: c.refused,
        deliveries: c.deliveries,
        p50Ms: percentile(c.latenciesMs, 50),
        p99Ms: percentile(c.latenciesMs, 99)
      }
    },
    /** Stops sending and resolves once every outstanding message was acked. */
    stop: async () => {
      running = false
      if (outstanding > 0) await new Promise<void>((resolve) => { drained = resolve })
      drained = undefined
    },
    disconnect: () => { for (const socket of sockets) socket.close() }
  })
}

// ---- orchestrator side ----

interface Collected { elapsedMs: number, loadCpuShare: number, loadWaitShare: number, acked: number, refused: number, deliveries: number, p50Ms: number, p99Ms: number }

/** A load generator with CLIENTS clients of `server` in the room, ready to load. */
export async function startRig (server: ServerHandle): Promise<Rig> {
  const load = await startLoad(FILE)
  await load.call('connect', { url: server.url, tokens: server.tokens.slice(0, CLIENTS) })
  return { server, load }
}

/** Loads the rig for `seconds` after a short ramp; returns the server's window and the clients' counts. */
export async function loadWindow (rig: Rig, seconds: number, rampMs = 500): Promise<{ window: WindowStats, collected: Collected }> {
  const { window, collected } = await loadedWindow<Collected>(rig, { inflight: INFLIGHT }, seconds, rampMs)
  await rig.load.call('stop')
  if (collected.refused > 0) throw new Error(`${rig.server.label}: ${collected.refused} publishes refused`)
  return { window, collected }
}

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const labels = settings.plainBaseline ? ['A0', 'A', 'B'] : ['A', 'B']
  const rigs = new Map<string, Rig>()
  try {
    await Promise.all(labels.map(async (label) => { rigs.set(label, await startRig(await servers.get(label))) }))
    for (const label of labels) await loadWindow(rigs.get(label)!, settings.warmupSeconds, 0)

    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    for (let t = 0; t < settings.trials; t++) {
      for (const label of trialOrder(labels, t)) {
        const { window, collected } = await loadWindow(rigs.get(label)!, settings.seconds)
        const seconds = collected.elapsedMs / 1000
        const values = {
          msgsPerSec: collected.acked / seconds,
          deliveriesPerSec: collected.deliveries / seconds,
          p50Ms: collected.p50Ms,
          p99Ms: collected.p99Ms,
          cpuUsPerPublish: window.cpuUs / collected.acked,
          userUsPerPublish: window.userUs / collected.acked,
          systemUsPerPublish: window.systemUs / collected.acked,
          cpuUsPerDelivery: window.cpuUs / collected.deliveries,
          serverCpuShare: window.cpuUs / window.elapsedUs,
          serverWaitShare: window.runQueueWaitUs / window.elapsedUs,
          serverRssMB: window.rss / 2 ** 20,
          loadCpuShare: collected.loadCpuShare,
          loadWaitShare: collected.loadWaitShare
        }
        recordTrial(series, label, values)
        trials.push({ trial: t, variant: label, ...values, window, collected })
      }
    }

    const by = byVariant(series, labels)
    const med = (label: string, name: string): string => summarize(series[label][name]).median.toFixed(0)
    return {
      name: 'relay',
      title: `Relay, closed loop: ${CLIENTS} clients in one room, ${INFLIGHT} in flight each`,
      params: { clients: CLIENTS, inflight: INFLIGHT, seconds: settings.seconds, trials: settings.trials, warmupSeconds: settings.warmupSeconds },
      variants: Object.fromEntries(labels.map((l) => [l, VARIANT_DESCRIPTIONS[l]])),
      metrics: [
        { key: 'msgsPerSec', label: 'messages/s (acked publishes)', unit: 'msg/s', better: 'higher', byVariant: by('msgsPerSec'), goal: { op: '>=', value: 0.9, text: 'B/A ≥ 0.9' } },
        { key: 'deliveriesPerSec', label: 'deliveries/s', unit: '/s', better: 'higher', byVariant: by('deliveriesPerSec') },
        { key: 'p50Ms', label: 'ack latency p50', unit: 'ms', better: 'lower', byVariant: by('p50Ms') },
        { key: 'p99Ms', label: 'ack latency p99', unit: 'ms', better: 'lower', byVariant: by('p99Ms') },
        { key: 'cpuUsPerPublish', label: 'server CPU per publish', unit: 'µs', better: 'lower', byVariant: by('cpuUsPerPublish'), goal: { op: '<=', value: 1 / 0.9, text: 'A/B ≥ 0.9 (B/A ≤ 1.11)' } },
        { key: 'userUsPerPublish', label: '  of which user', unit: 'µs', better: 'lower', byVariant: by('userUsPerPublish') },
        { key: 'systemUsPerPublish', label: '  of which system', unit: 'µs', better: 'lower', byVariant: by('systemUsPerPublish') },
        { key: 'serverRssMB', label: 'server RSS after window', unit: 'MiB', better: 'lower', byVariant: by('serverRssMB') }
      ],
      ...cpuShares(series, labels),
      notes: [
        `Each publish is delivered to the ${CLIENTS - 1} other members; server CPU per delivery (median): ` +
          labels.map((l) => `${l} ${summarize(series[l].cpuUsPerDelivery).median.toFixed(2)} µs`).join(', ') + '.',
        ...(labels.includes('A0')
          ? [`A keeps connection-state recovery on (information): every broadcast is kept in memory for 2 minutes (RSS after the windows: A ${med('A', 'serverRssMB')} MiB vs A0 ${med('A0', 'serverRssMB')} MiB). B has it off (SOCKET_RECOVERY_SECONDS=0, the default) and keeps /chat's room history instead (HISTORY_NAMESPACES, see the history scenario).`]
          : []),
        `Ack latency is Little's law at work: ${CLIENTS * INFLIGHT} messages in flight, each fanned out to ${CLIENTS - 1} sockets, queue behind one another (e.g. A ${med('A', 'p50Ms')} ms p50).`
      ],
      trials
    }
  } finally {
    await releaseRigs(rigs.values())
  }
}

export interface ProfileRun {
  label: string
  file: string
  window: WindowStats
  msgsPerSec: number
  cpuUsPerPublish: number
}

/**
 * Runs the relay load against a server started with `node --cpu-prof
 * --cpu-prof-dir=<scratch>` (see startProfiledServer), stops it so the profile
 * is written, and returns the main thread's profile with the measured window
 * (so start-up and idle time are left out).
 */
export async function profileRelay (settings: BenchSettings, server: ServerHandle, scratch: string, file: string, seconds: number): Promise<ProfileRun> {
  const pid = server.child.pid
  let measured: { window: WindowStats, collected: Collected }
  const rig = await startRig(server)
  try {
    await loadWindow(rig, settings.warmupSeconds, 0)
    measured = await loadWindow(rig, seconds)
  } finally {
    await rig.load.call('disconnect').catch(() => {})
    await rig.load.stop()
    await server.stop()
  }
  keepMainProfile(pid, scratch, file)
  const { window, collected } = measured
  return { label: server.label, file, window, msgsPerSec: collected.acked / (collected.elapsedMs / 1000), cpuUsPerPublish: window.cpuUs / collected.acked }
}

/** A profiled server (bench/lib/profiled-window.ts) with a token for each relay client. */
export async function startProfiledServer (kind: ServerKind, label: string, scratch: string): Promise<ServerHandle> {
  return await startProfiled(kind, label, scratch, CLIENTS)
}

if (isEntry(import.meta.url)) loadGenerator()
