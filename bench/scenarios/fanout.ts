// Scenario 4: fan-out. One publisher sends to a room of MEMBERS sockets (the
// in-memory adapter). The publisher keeps INFLIGHT messages outstanding, where
// a message is outstanding until it is acked *and* every member received it,
// so the server's write buffers cannot grow without bound.
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { isEntry, serveLoadGenerator, VARIANT_DESCRIPTIONS, windowStart, windowStop, type BenchSettings, type ScenarioResult, type ServerSet, type WindowStats, byVariant, cpuShares, releaseRigs, type Series } from '../lib/scenario.js'
import { sleep, trialOrder } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'
import { decodeEvent, openMany, WireSocket } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'
const ROOM = 'bench-fanout'
const MEMBERS = 200
const INFLIGHT = 16
const TEXT = 'Service notice for everyone in the room: the gateway fans this out to every member.'

function loadGenerator (): void {
  let publisher: WireSocket | undefined
  let all: WireSocket[] = []
  let running = false
  let acksOutstanding = 0
  let sent = 0
  let delivered = 0
  let refused = 0
  let drained: (() => void) | undefined
  let marked = { sent: 0, delivered: 0, acked: 0, usage: usageNow() }
  let acked = 0

  // Sends while fewer than INFLIGHT messages are unacked or not yet delivered to every member.
  function pump (): void {
    while (running && acksOutstanding < INFLIGHT && sent * MEMBERS - delivered < INFLIGHT * MEMBERS) {
      acksOutstanding++
      sent++
      publisher!.emit('notice', { room: ROOM, data: { text: TEXT, seq: sent } }, (frame, start) => {
        acksOutstanding--
        if (frame.toString('latin1', start, start + 11) === '[{"ok":true') acked++
        else refused++
        pump()
        if (!running && acksOutstanding === 0 && delivered >= sent * MEMBERS) drained?.()
      })
    }
  }

  serveLoadGenerator({
    connect: async (args: { url: string, tokens: Array<string | null> }) => {
      const { sockets } = await openMany(MEMBERS + 1, 100, (i) => ({
        url: args.url,
        namespace: NAMESPACE,
        auth: args.tokens[i] === null ? { sub: `user-${i}` } : { token: args.tokens[i] }
      }))
      all = sockets
      publisher = sockets[MEMBERS]
      const members = sockets.slice(0, MEMBERS)
      for (const member of members) {
        const joined = await member.emitWithAck('join', { room: ROOM }) as { ok?: boolean }
        if (joined?.ok !== true) throw new Error(`join refused: ${JSON.stringify(joined)}`)
      }
      const check = new Promise<unknown[]>((resolve) => { members[0].onEvent = (frame) => { resolve(decodeEvent(frame, NAMESPACE)) } })
      const ack = await publisher.emitWithAck('notice', { room: ROOM, data: { text: 'check' } }) as { ok: boolean, id: string }
      const [event, message] = await check as [string, { id: string, data: { text: string } }]
      if (ack.ok !== true || event !== 'notice' || message.id !== ack.id || message.data.text !== 'check') throw new Error(`fan-out check failed: ${JSON.stringify([ack, event, message])}`)
      // Wait for the check message to reach every member before counting.
      await sleep(200)
      for (const member of members) member.onEvent = () => { delivered++; if (running) pump(); else if (acksOutstanding === 0 && delivered >= sent * MEMBERS) drained?.() }
      return { members: members.length }
    },
    start: () => { running = true; pump() },
    mark: () => { marked = { sent, delivered, acked, usage: usageNow() } },
    collect: () => ({ elapsedMs: performance.now() - marked.usage.at, ...((u) => ({ loadCpuShare: u.cpuShare, loadWaitShare: u.waitShare }))(usageSince(marked.usage)), sent: sent - marked.sent, delivered: delivered - marked.delivered, acked: acked - marked.acked, refused }),
    stop: async () => {
      running = false
      if (acksOutstanding > 0 || delivered < sent * MEMBERS) await new Promise<void>((resolve) => { drained = resolve })
      drained = undefined
    },
    disconnect: () => { for (const socket of all) socket.close() }
  })
}

interface Collected { elapsedMs: number, loadCpuShare: number, loadWaitShare: number, sent: number, delivered: number, acked: number, refused: number }

async function loadWindow (server: ServerHandle, load: LoadHandle, seconds: number, rampMs: number): Promise<{ window: WindowStats, collected: Collected }> {
  await load.call('start')
  await sleep(rampMs)
  await Promise.all([windowStart(server), load.call('mark')])
  await sleep(seconds * 1000)
  const [window, collected] = await Promise.all([windowStop(server), load.call<Collected>('collect')])
  await load.call('stop')
  if (collected.refused > 0) throw new Error(`${server.label}: ${collected.refused} publishes refused`)
  return { window, collected }
}

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const labels = ['A', 'B']
  const rigs = new Map<string, { server: ServerHandle, load: LoadHandle }>()
  try {
    await Promise.all(labels.map(async (label) => {
      const server = await servers.get(label)
      const load = await startLoad(FILE)
      rigs.set(label, { server, load })
      await load.call('connect', { url: server.url, tokens: server.tokens.slice(0, MEMBERS + 1) })
    }))
    for (const label of labels) await loadWindow(rigs.get(label)!.server, rigs.get(label)!.load, settings.warmupSeconds, 0)

    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    for (let t = 0; t < settings.trials; t++) {
      for (const label of trialOrder(labels, t)) {
        const { server, load } = rigs.get(label)!
        const { window, collected } = await loadWindow(server, load, settings.fanoutSeconds, 500)
        const seconds = collected.elapsedMs / 1000
        const values = {
          deliveriesPerSec: collected.delivered / seconds,
          publishesPerSec: collected.acked / seconds,
          cpuUsPerDelivery: window.cpuUs / collected.delivered,
          cpuUsPerPublish: window.cpuUs / collected.acked,
          serverCpuShare: window.cpuUs / window.elapsedUs,
          serverWaitShare: window.runQueueWaitUs / window.elapsedUs,
          loadCpuShare: collected.loadCpuShare,
          loadWaitShare: collected.loadWaitShare
        }
        series[server.label] ??= {}
        for (const [name, value] of Object.entries(values)) (series[server.label][name] ??= []).push(value)
        trials.push({ trial: t, variant: server.label, ...values, window, collected })
      }
    }
    const by = byVariant(series, labels)
    return {
      name: 'fanout',
      title: `Fan-out: one publisher to a room of ${MEMBERS} members (in-memory adapter), ${INFLIGHT} messages in flight`,
      params: { members: MEMBERS, inflight: INFLIGHT, seconds: settings.fanoutSeconds, trials: settings.trials },
      variants: { A: VARIANT_DESCRIPTIONS.A, B: VARIANT_DESCRIPTIONS.B },
      metrics: [
        { key: 'deliveriesPerSec', label: 'deliveries/s', unit: '/s', better: 'higher', byVariant: by('deliveriesPerSec') },
        { key: 'publishesPerSec', label: 'publishes/s', unit: '/s', better: 'higher', byVariant: by('publishesPerSec') },
        { key: 'cpuUsPerDelivery', label: 'server CPU per delivery', unit: 'µs', better: 'lower', byVariant: by('cpuUsPerDelivery') }
      ],
      ...cpuShares(series, labels),
      notes: [],
      trials
    }
  } finally {
    for (const { load } of rigs.values()) await load.call('disconnect').catch(() => {})
    await releaseRigs(rigs.values())
  }
}

if (isEntry(import.meta.url)) loadGenerator()
