// Scenario 4: fan-out. Two cases, each with the in-memory adapter (A vs B) and
// the Redis adapter (Ar vs Br):
//   room of 1,000: one publisher to one room of 1,000 members (the goal rows);
//   rooms of 10:   SMALL_ROOMS rooms of 10 members, one publisher each, in parallel.
// Each publisher keeps `inflight` messages outstanding, where a message is
// outstanding until it is acked *and* every member (of its load generator)
// received it, so the server's write buffers cannot grow without bound.
// The 1,000 members are split over two load generators, both on the load CPU:
// that adds no CPU, but no single event loop serialises the receive path, and
// the verdicts' load share (their sum) shows whether the load CPU was the limit.
// Every gateway socket gets a token minted for this scenario (fresh, one subject each).
import { fileURLToPath } from 'node:url'
import { startLoad, type LoadHandle, type ServerHandle } from '../lib/processes.js'
import { isEntry, quiesce, serveLoadGenerator, VARIANT_DESCRIPTIONS, windowStart, windowStop, type BenchSettings, type Metric, type ScenarioResult, type ServerSet, type WindowStats, byVariant, type Series } from '../lib/scenario.js'
import { median, sleep, trialOrder } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'
import { decodeEvent, openMany, type WireSocket } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'
const TEXT = 'Service notice for everyone in the room: the gateway fans this out to every member.'

interface FanoutCase {
  key: string
  title: string
  rooms: number
  members: number
  /** Messages outstanding per publisher. */
  inflight: number
  /** Load generators the members of each room are split over (the first also holds the publishers). */
  processes: number
}

const LARGE: FanoutCase = { key: 'room1000', title: 'room of 1,000', rooms: 1, members: 1000, inflight: 16, processes: 2 }
const SMALL_ROOMS = 10
const SMALL: FanoutCase = { key: 'rooms10', title: `${SMALL_ROOMS} rooms of 10`, rooms: SMALL_ROOMS, members: 10, inflight: 8, processes: 1 }
const CASES = [LARGE, SMALL]
/** Load-generator processes per variant: the largest split any case asks for. */
const LOAD_PROCESSES = Math.max(...CASES.map((c) => c.processes))

/** What one load generator holds of a room: maybe its publisher, and some of its members. */
interface GroupSpec { caseKey: string, room: string, inflight: number, publisher: boolean, members: number }

// ---- load-generator side (its own process, pinned to the load CPU) ----

interface Group extends GroupSpec {
  publisherSocket: WireSocket | undefined
  memberSockets: WireSocket[]
  sent: number
  acked: number
  refused: number
  /** Deliveries to this process's members since counting began (after the check message). */
  delivered: number
  acksOutstanding: number
  /** Messages this process's members must receive before `stop` returns (the publisher's count, from whoever holds it). */
  target: number
}

interface Counts { sent: number, acked: number, refused: number, delivered: number }

function loadGenerator (): void {
  let all: WireSocket[] = []
  let groups: Group[] = []
  let active: Group[] = []
  let running = false
  let drained: (() => void) | undefined
  let marked = { counts: new Map<Group, Counts>(), usage: usageNow() }

  const isDrained = (g: Group): boolean => g.acksOutstanding === 0 && g.delivered >= g.target * g.members
  const checkDrained = (): void => { if (drained !== undefined && active.every(isDrained)) drained() }

  // Sends while fewer than `inflight` messages are unacked or not yet delivered to every local member.
  function pump (g: Group): void {
    const publisher = g.publisherSocket
    if (publisher === undefined) return
    while (running && g.acksOutstanding < g.inflight && g.sent * g.members - g.delivered < g.inflight * g.members) {
      g.acksOutstanding++
      g.sent++
      g.target = g.sent
      publisher.emit('notice', { room: g.room, data: { text: TEXT, seq: g.sent } }, (frame, start) => {
        g.acksOutstanding--
        if (frame.toString('latin1', start, start + 11) === '[{"ok":true') g.acked++
        else g.refused++
        if (running) pump(g)
        else checkDrained()
      })
    }
  }

  serveLoadGenerator({
    /** Opens this process's sockets (publisher first, then members, per group, in token order) and joins the rooms. */
    connect: async (args: { url: string, tokens: Array<string | null>, groups: GroupSpec[] }) => {
      const { sockets } = await openMany(args.tokens.length, 100, (i) => ({
        url: args.url,
        namespace: NAMESPACE,
        auth: args.tokens[i] === null ? { sub: `user-${i}` } : { token: args.tokens[i] }
      }))
      all = sockets
      let next = 0
      groups = args.groups.map((spec) => {
        const publisherSocket = spec.publisher ? sockets[next++] : undefined
        const memberSockets = sockets.slice(next, next + spec.members)
        next += spec.members
        return { ...spec, publisherSocket, memberSockets, sent: 0, acked: 0, refused: 0, delivered: 0, acksOutstanding: 0, target: 0 }
      })
      if (next !== sockets.length) throw new Error(`fan-out load generator: ${sockets.length} tokens for ${next} sockets`)
      await Promise.all(groups.map(async (g) => {
        for (const member of g.memberSockets) {
          const joined = await member.emitWithAck('join', { room: g.room }) as { ok?: boolean }
          if (joined?.ok !== true) throw new Error(`join refused: ${JSON.stringify(joined)}`)
        }
      }))
      // Until `counting`, a member only records the check message.
      for (const g of groups) for (const member of g.memberSockets) member.onEvent = undefined
      return { sockets: sockets.length }
    },
    /** Sends one message per room held here, decoded in full by the local member 0: { id, data } matches the ack. */
    check: async () => {
      await Promise.all(groups.filter((g) => g.publisherSocket !== undefined).map(async (g) => {
        const first = g.memberSockets[0]
        if (first === undefined) throw new Error(`${g.room}: the publisher's load generator holds no member to check with`)
        const received = new Promise<unknown[]>((resolve) => { first.onEvent = (frame) => { first.onEvent = undefined; resolve(decodeEvent(frame, NAMESPACE)) } })
        const ack = await g.publisherSocket!.emitWithAck('notice', { room: g.room, data: { text: 'check' } }) as { ok: boolean, id: string }
        const [event, message] = await received as [string, { id: string, data: { text: string } }]
        if (ack.ok !== true || event !== 'notice' || message.id !== ack.id || message.data.text !== 'check') throw new Error(`fan-out check failed: ${JSON.stringify([ack, event, message])}`)
      }))
    },
    /** Once every local member has the check message (one event each), counts deliveries from now on. */
    counting: async () => {
      const deadline = Date.now() + 30_000
      const missing = (): number => groups.reduce((n, g) => n + g.memberSockets.filter((m) => m.events < 1).length, 0)
      while (missing() > 0) {
        if (Date.now() > deadline) throw new Error(`${missing()} members never received the check message`)
        await sleep(20)
      }
      for (const g of groups) {
        for (const member of g.memberSockets) {
          member.onEvent = () => {
            g.delivered++
            if (running) pump(g)
            else checkDrained()
          }
        }
      }
    },
    start: (args: { caseKey: string }) => {
      active = groups.filter((g) => g.caseKey === args.caseKey)
      running = true
      for (const g of active) pump(g)
    },
    mark: () => {
      marked = { counts: new Map(active.map((g) => [g, { sent: g.sent, acked: g.acked, refused: g.refused, delivered: g.delivered }])), usage: usageNow() }
    },
    collect: () => {
      const sum = (pick: (g: Group, m: Counts) => number): number => active.reduce((n, g) => n + pick(g, marked.counts.get(g)!), 0)
      const { cpuShare, waitShare } = usageSince(marked.usage)
      return {
        elapsedMs: performance.now() - marked.usage.at,
        loadCpuShare: cpuShare,
        loadWaitShare: waitShare,
        sent: sum((g, m) => g.sent - m.sent),
        acked: sum((g, m) => g.acked - m.acked),
        refused: sum((g, m) => g.refused - m.refused),
        delivered: sum((g, m) => g.delivered - m.delivered)
      }
    },
    /** Stops publishing and waits until every message sent is acked and delivered here; returns what each room's publisher sent. */
    stop: async (args: { sent?: Record<string, number> }) => {
      running = false
      for (const g of active) if (g.publisherSocket === undefined) g.target = args.sent?.[g.room] ?? g.target
      if (!active.every(isDrained)) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            reject(new Error(`fan-out did not drain: ${active.map((g) => `${g.room} ${g.delivered}/${g.target * g.members} delivered, ${g.acksOutstanding} acks out`).join('; ')}`))
          }, 30_000)
          drained = () => { clearTimeout(timer); resolve() }
          checkDrained()
        })
      }
      drained = undefined
      return Object.fromEntries(active.filter((g) => g.publisherSocket !== undefined).map((g) => [g.room, g.sent]))
    },
    disconnect: () => { for (const socket of all) socket.close() }
  })
}

// ---- orchestrator side ----

interface Collected { elapsedMs: number, loadCpuShare: number, loadWaitShare: number, sent: number, acked: number, refused: number, delivered: number }

interface Rig { server: ServerHandle, loads: LoadHandle[] }

/** Sockets per variant: every room's publisher and members. */
const SOCKETS = CASES.reduce((n, c) => n + c.rooms * (1 + c.members), 0)

/**
 * Which sockets each load generator opens: per case and room, the publisher
 * and the first share of the members go to load generator 0, the rest of the
 * members to the others; every socket gets its own token (subject).
 */
function layout (tokens: Array<string | null>): Array<{ tokens: Array<string | null>, groups: GroupSpec[] }> {
  if (tokens.length < SOCKETS) throw new Error(`fan-out needs ${SOCKETS} tokens, got ${tokens.length}`)
  const parts = Array.from({ length: LOAD_PROCESSES }, () => ({ tokens: [] as Array<string | null>, groups: [] as GroupSpec[] }))
  let next = 0
  const take = (n: number): Array<string | null> => { next += n; return tokens.slice(next - n, next) }
  for (const c of CASES) {
    for (let r = 0; r < c.rooms; r++) {
      const room = `bench-fanout-${c.key}-${r}`
      for (let p = 0; p < c.processes; p++) {
        const members = Math.floor(c.members * (p + 1) / c.processes) - Math.floor(c.members * p / c.processes)
        parts[p].tokens.push(...take((p === 0 ? 1 : 0) + members))
        parts[p].groups.push({ caseKey: c.key, room, inflight: c.inflight, publisher: p === 0, members })
      }
    }
  }
  return parts
}

async function loadWindow (rig: Rig, c: FanoutCase, seconds: number, rampMs: number): Promise<{ window: WindowStats, collected: Collected }> {
  const { server, loads } = rig
  await Promise.all(loads.map(async (load) => await load.call('start', { caseKey: c.key })))
  await sleep(rampMs)
  await Promise.all([windowStart(server), ...loads.map(async (load) => await load.call('mark'))])
  await sleep(seconds * 1000)
  const [window, ...parts] = await Promise.all([windowStop(server), ...loads.map(async (load) => await load.call<Collected>('collect'))])
  // The publishers' load generator first: the others then wait for what it sent.
  const sent = await loads[0].call<Record<string, number>>('stop', {})
  await Promise.all(loads.slice(1).map(async (load) => await load.call('stop', { sent })))
  const collected: Collected = {
    elapsedMs: parts[0].elapsedMs,
    // Every load generator shares the load CPU: their shares add up.
    loadCpuShare: parts.reduce((n, p) => n + p.loadCpuShare, 0),
    loadWaitShare: parts.reduce((n, p) => n + p.loadWaitShare, 0),
    sent: parts.reduce((n, p) => n + p.sent, 0),
    acked: parts.reduce((n, p) => n + p.acked, 0),
    refused: parts.reduce((n, p) => n + p.refused, 0),
    delivered: parts.reduce((n, p) => n + p.delivered, 0)
  }
  if (collected.refused > 0) throw new Error(`${server.label} ${c.key}: ${collected.refused} publishes refused`)
  return { window, collected }
}

const LABELS = ['A', 'B', 'Ar', 'Br']
/** Each goal and ratio pairs a gateway with the bare server on the same adapter. */
const PAIRS: Array<{ adapter: string, of: string, to: string }> = [{ adapter: 'in-memory', of: 'B', to: 'A' }, { adapter: 'Redis', of: 'Br', to: 'Ar' }]

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const rigs = new Map<string, Rig>()
  try {
    // allSettled: one variant failing must not tear the rigs down (finally) under another's set-up.
    const setups = await Promise.allSettled(LABELS.map(async (label) => {
      const server = await servers.get(label)
      const loads: LoadHandle[] = []
      rigs.set(label, { server, loads })
      for (let p = 0; p < LOAD_PROCESSES; p++) loads.push(await startLoad(FILE))
      // Fresh tokens (the pool's were minted at the run's start and may be near their JWT_TTL by now).
      const tokens = await server.call<Array<string | null>>('mint', { subs: Array.from({ length: SOCKETS }, (_, i) => `fanout-${i}`) })
      const parts = layout(tokens)
      await Promise.all(loads.map(async (load, p) => await load.call('connect', { url: server.url, ...parts[p] })))
      await loads[0].call('check')
      await Promise.all(loads.map(async (load) => await load.call('counting')))
      // The audit rows of the mints and handshakes, written before any window.
      await server.call('settle')
    }))
    for (const s of setups) if (s.status === 'rejected') throw s.reason
    for (const c of CASES) for (const label of LABELS) await loadWindow(rigs.get(label)!, c, settings.warmupSeconds, 0)

    // series[label][`${case}.${metric}`]
    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    for (let t = 0; t < settings.trials; t++) {
      for (const c of CASES) {
        for (const label of trialOrder(LABELS, t)) {
          const rig = rigs.get(label)!
          const { window, collected } = await loadWindow(rig, c, settings.fanoutSeconds, 500)
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
          series[label] ??= {}
          for (const [name, value] of Object.entries(values)) (series[label][`${c.key}.${name}`] ??= []).push(value)
          trials.push({ trial: t, case: c.key, variant: label, ...values, window, collected })
        }
      }
    }
    const by = byVariant(series, LABELS)
    const pick = (key: string, labels: string[]): Metric['byVariant'] => Object.fromEntries(Object.entries(by(key)).filter(([l]) => labels.includes(l)))
    const metrics: Metric[] = []
    for (const c of CASES) {
      const goals = c === LARGE
      for (const { adapter, of, to } of PAIRS) {
        metrics.push(
          {
            key: `${c.key}.${adapter}.deliveriesPerSec`,
            label: `${c.title}, ${adapter}: deliveries/s`,
            unit: '/s',
            better: 'higher',
            byVariant: pick(`${c.key}.deliveriesPerSec`, [to, of]),
            ...(goals ? { goal: { op: '>=' as const, value: 0.9, text: `${of}/${to} ≥ 0.9`, of, to } } : {})
          },
          {
            key: `${c.key}.${adapter}.cpuUsPerDelivery`,
            label: `${c.title}, ${adapter}: server CPU per delivery`,
            unit: 'µs',
            better: 'lower',
            byVariant: pick(`${c.key}.cpuUsPerDelivery`, [to, of]),
            // A/B ≥ 0.9 on CPU per delivery, as the issue puts it, is B/A ≤ 1/0.9.
            ...(goals ? { goal: { op: '<=' as const, value: 1 / 0.9, text: `${of}/${to} ≤ 1.11`, of, to } } : {})
          }
        )
      }
    }
    // The verdicts (server- or client-bound) are the goal case's; the other case's load shares go to the notes.
    const share = (c: FanoutCase, name: string): Record<string, number[]> => Object.fromEntries(LABELS.map((l) => [l, series[l][`${c.key}.${name}`]]))
    const pct = (values: number[]): string => `${(median(values) * 100).toFixed(0)}%`
    return {
      name: 'fanout',
      title: `Fan-out: one publisher to a room of ${LARGE.members.toLocaleString('en-US')} members (${LARGE.inflight} messages in flight), and ${SMALL.rooms} publishers to ${SMALL.rooms} rooms of ${SMALL.members} (${SMALL.inflight} in flight each); in-memory and Redis adapters`,
      params: { cases: CASES, socketsPerVariant: SOCKETS, loadProcesses: LOAD_PROCESSES, seconds: settings.fanoutSeconds, trials: settings.trials },
      variants: Object.fromEntries(LABELS.map((l) => [l, VARIANT_DESCRIPTIONS[l]])),
      metrics,
      comparisons: [['Br', 'Ar']],
      serverCpuShare: share(LARGE, 'serverCpuShare'),
      serverWaitShare: share(LARGE, 'serverWaitShare'),
      loadCpuShare: share(LARGE, 'loadCpuShare'),
      loadWaitShare: share(LARGE, 'loadWaitShare'),
      notes: [
        `A message is outstanding until acked and received by every member; the ${LARGE.members.toLocaleString('en-US')} members of the large room are split over ${LARGE.processes} load-generator processes (both on the load CPU; the publisher's process paces on its own members, and each process drains before the next window). The Load line is the ${LARGE.title} windows', with the load generators' shares summed.`,
        `Load (${SMALL.title}, medians): ` + LABELS.map((l) => `${l} server CPU ${pct(series[l][`${SMALL.key}.serverCpuShare`])} + wait ${pct(series[l][`${SMALL.key}.serverWaitShare`])}, load CPU ${pct(series[l][`${SMALL.key}.loadCpuShare`])}`).join('; ') + '.',
        'Ar and Br publish every broadcast to Redis as well (one PUBLISH per message, not per member) and receive it back on their subscriber connection; Redis runs on the load CPU.'
      ],
      trials
    }
  } finally {
    for (const { loads } of rigs.values()) for (const load of loads) await load.call('disconnect').catch(() => {})
    for (const { server, loads } of rigs.values()) {
      for (const load of loads) await load.stop().catch(() => {})
      await quiesce(server).catch(() => {})
    }
  }
}

if (isEntry(import.meta.url)) loadGenerator()
