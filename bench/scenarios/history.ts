// Scenario: what room history and recovery cost (SPEC §12). (1) The relay load of the relay scenario
// with history off and on, in process (B, Bh) and in Redis (Br, Brh): server CPU per publish and Redis
// commands per relayed packet. (2) Memory per room of history, in process and in Redis. (3) 1,000
// clients of one instance that is SIGKILLed reconnect to another and re-join with `since`: the time
// until all have caught up, and whether each got every message once, in order.
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { createMemoryHistory } from '../../src/history/memory-history.js'
import { createRedisHistory } from '../../src/history/redis-history.js'
import { startLoad, startServer } from '../lib/processes.js'
import { byVariant, isEntry, recordTrial, releaseRigs, serveLoadGenerator, type BenchSettings, type Rig, type ScenarioResult, type Series, type ServerSet } from '../lib/scenario.js'
import { sleep, summarize, trialOrder, waitFor } from '../lib/stats.js'
import { decodeEvent, openMany, WireSocket } from '../lib/wire.js'
import { loadWindow, startRig } from './relay.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'
const RECOVERY_ROOM = 'bench-recovery'
export const RECOVERY_CLIENTS = 1000
const PUBLISH_EVERY_MS = 50
const ROOMS_MEASURED = 1000
const HISTORY_SIZE = 100
const TEXT = 'The quick brown fox jumps over the lazy dog; the gateway relays it to the room.'

const OFF = { HISTORY_NAMESPACES: 'none', PRESENCE_NAMESPACES: 'none' }
const ON = { PRESENCE_NAMESPACES: 'none' }

// ---- load-generator side: the clients of the killed instance ----

interface Client { socket: WireSocket, ids: string[], last?: string, rejoinedAt?: number, recovered?: boolean, token: string }

function loadGenerator (): void {
  let clients: Client[] = []
  let killedAt = 0
  const track = (client: Client): void => {
    client.socket.onEvent = (frame) => {
      const [event, message] = decodeEvent(frame, NAMESPACE) as [string, { id: string }]
      if (event !== 'message') return
      client.ids.push(message.id)
      client.last = message.id
    }
  }
  serveLoadGenerator({
    connect: async (args: { url: string, tokens: string[] }) => {
      const { sockets } = await openMany(args.tokens.length, 50, (i) => ({ url: args.url, namespace: NAMESPACE, auth: { token: args.tokens[i] } }))
      clients = sockets.map((socket, i) => ({ socket, ids: [], token: args.tokens[i] }))
      for (const client of clients) {
        const joined = await client.socket.emitWithAck('join', { room: RECOVERY_ROOM }) as { ok?: boolean }
        if (joined?.ok !== true) throw new Error(`join refused: ${JSON.stringify(joined)}`)
        track(client)
      }
      return { clients: clients.length }
    },
    /** When its instance is gone, each client reconnects to `url` after a jittered delay (as the SDK: [0, 500) ms) and re-joins with since. */
    failOver: (args: { url: string }) => {
      killedAt = performance.now()
      for (const client of clients) {
        const reconnect = async (): Promise<void> => {
          await sleep(Math.random() * 500)
          const socket = new WireSocket({ url: args.url, namespace: NAMESPACE, auth: { token: client.token } })
          await socket.connect()
          client.socket = socket
          track(client)
          const answer = await socket.emitWithAck('join', client.last === undefined ? { room: RECOVERY_ROOM } : { room: RECOVERY_ROOM, since: client.last }) as { ok?: boolean, recovered?: boolean }
          if (answer?.ok !== true) throw new Error(`re-join refused: ${JSON.stringify(answer)}`)
          client.recovered = answer.recovered === true
          client.rejoinedAt = performance.now()
        }
        let started = false
        const go = (): void => {
          if (started) return
          started = true
          reconnect().catch(() => { started = false; setTimeout(go, 200) })
        }
        if (!client.socket.isConnected) go()
        else client.socket.onClose = go
      }
      return { ok: true }
    },
    status: () => {
      const rejoined = clients.filter((c) => c.rejoinedAt !== undefined)
      return { rejoined: rejoined.length, recovered: rejoined.filter((c) => c.recovered === true).length, lastRejoinMs: Math.max(0, ...rejoined.map((c) => c.rejoinedAt! - killedAt)) }
    },
    /** Each client's ids since its first; compared with what was published by the orchestrator. */
    received: () => clients.map((c) => c.ids),
    disconnect: () => { for (const c of clients) c.socket.close() }
  })
}

// ---- orchestrator side ----

async function redisCommands (redis: Redis): Promise<number> {
  const info = await redis.info('stats')
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? 0)
}

/** (1): relay throughput, CPU and Redis commands per publish, history off and on. */
async function relayCost (settings: BenchSettings, servers: ServerSet, series: Series, redis: Redis): Promise<string[]> {
  const variants: Array<[string, string, Record<string, string>]> = [['B', 'B', OFF], ['Bh', 'B', ON], ['Br', 'Br', OFF], ['Brh', 'Br', ON]]
  const rigs = new Map<string, Rig>()
  try {
    for (const [label, kind, config] of variants) rigs.set(label, await startRig(await servers.get(kind, config)))
    for (const [label] of variants) await loadWindow(rigs.get(label)!, settings.warmupSeconds, 0)
    const labels = variants.map(([label]) => label)
    for (let t = 0; t < settings.trials; t++) {
      for (const label of trialOrder(labels, t)) {
        const before = await redisCommands(redis)
        const { window, collected } = await loadWindow(rigs.get(label)!, settings.seconds)
        const commands = await redisCommands(redis) - before
        recordTrial(series, label, {
          msgsPerSec: collected.acked / (collected.elapsedMs / 1000),
          cpuUsPerPublish: window.cpuUs / collected.acked,
          redisCommandsPerPublish: label.startsWith('Br') ? commands / collected.acked : 0,
          serverRssMB: window.rss / 2 ** 20
        })
      }
    }
    return labels
  } finally {
    await releaseRigs(rigs.values())
  }
}

/** (2): bytes per room holding HISTORY_SIZE relay-sized messages. */
async function memoryPerRoom (redis: Redis): Promise<{ inProcessBytes: number, redisBytes: number }> {
  const message = { room: 'room-0', from: { sub: 'user-1' }, data: { text: TEXT, seq: 0 }, ts: Date.now() }
  globalThis.gc?.()
  const before = process.memoryUsage().heapUsed
  const memory = createMemoryHistory({ size: HISTORY_SIZE, ttlMs: 300_000 })
  for (let r = 0; r < ROOMS_MEASURED; r++) {
    for (let i = 0; i < HISTORY_SIZE; i++) memory.append(NAMESPACE, `room-${r}`, 'message', { ...message, room: `room-${r}`, data: { text: TEXT, seq: i } })
  }
  globalThis.gc?.()
  const inProcessBytes = (process.memoryUsage().heapUsed - before) / ROOMS_MEASURED
  memory.close()
  const prefixed = redis.duplicate({ keyPrefix: `bench-history-${process.pid}:` })
  try {
    const stored = createRedisHistory(prefixed, { size: HISTORY_SIZE, ttlMs: 300_000 })
    for (let i = 0; i < HISTORY_SIZE; i++) await stored.append(NAMESPACE, 'room-0', 'message', { ...message, data: { text: TEXT, seq: i } })
    const redisBytes = Number(await prefixed.call('MEMORY', 'USAGE', `bench-history-${process.pid}:history:${NAMESPACE}:room-0`, 'SAMPLES', '0'))
    await prefixed.del(`history:${NAMESPACE}:room-0`)
    return { inProcessBytes, redisBytes }
  } finally {
    prefixed.disconnect()
  }
}

/** (3): RECOVERY_CLIENTS clients of an instance that is SIGKILLed re-join on another with since. */
async function failOver (): Promise<Record<string, number>> {
  // Two instances of one cluster: the same PostgreSQL, Redis and secret (the overlay key only makes two processes).
  const [doomed, survivor] = await Promise.all(['1', '2'].map(async (n) => await startServer('gateway-redis', { label: 'Brh', config: { ...ON, BENCH_INSTANCE: n } })))
  const load = await startLoad(FILE)
  try {
    const subs = Array.from({ length: RECOVERY_CLIENTS }, (_, i) => `recover-${i}`)
    const tokens = await doomed.call<string[]>('mint', { subs })
    await load.call('connect', { url: doomed.url, tokens })
    const [publisherToken] = await survivor.call<string[]>('mint', { subs: ['publisher'] })
    const publisher = new WireSocket({ url: survivor.url, namespace: NAMESPACE, auth: { token: publisherToken } })
    await publisher.connect()
    const published: string[] = []
    let publishing = true
    const loop = (async () => {
      let seq = 0
      while (publishing) {
        const answer = await publisher.emitWithAck('message', { room: RECOVERY_ROOM, data: { text: TEXT, seq: seq++ } }) as { id: string }
        published.push(answer.id)
        await sleep(PUBLISH_EVERY_MS)
      }
    })()
    await sleep(1000)
    doomed.child.kill('SIGKILL')
    await load.call('failOver', { url: survivor.url })
    await waitFor('every client re-joined', async () => (await load.call<{ rejoined: number }>('status')).rejoined === RECOVERY_CLIENTS, 120_000)
    const status = await load.call<{ rejoined: number, recovered: number, lastRejoinMs: number }>('status')
    await sleep(1000)
    publishing = false
    await loop
    await sleep(500)
    const received = await load.call<string[][]>('received')
    let exact = 0
    for (const ids of received) {
      const from = published.indexOf(ids[0])
      const expected = published.slice(from)
      if (from >= 0 && ids.length === expected.length && ids.every((id, i) => id === expected[i])) exact++
    }
    publisher.close()
    await load.call('disconnect')
    return { caughtUpMs: status.lastRejoinMs, recovered: status.recovered, exactlyOnceInOrder: exact, clients: RECOVERY_CLIENTS, published: published.length }
  } finally {
    await load.stop()
    await doomed.stop().catch(() => {})
    await survivor.stop()
  }
}

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const redis = new Redis(process.env.BENCH_REDIS_URL!)
  try {
    const series: Series = {}
    const labels = await relayCost(settings, servers, series, redis)
    const memory = await memoryPerRoom(redis)
    const recovery = await failOver()
    const by = byVariant(series, labels)
    const med = (label: string, key: string): number => summarize(series[label][key]).median
    return {
      name: 'history',
      title: 'Room history and recovery (SPEC §12): relay with history off and on; 1,000 clients of a killed instance recover on another',
      params: { trials: settings.trials, seconds: settings.seconds, historySize: HISTORY_SIZE, recoveryClients: RECOVERY_CLIENTS, publishEveryMs: PUBLISH_EVERY_MS },
      variants: {
        B: 'the gateway on PostgreSQL, history and presence off (HISTORY_NAMESPACES=none)',
        Bh: 'as B with history on /chat (the default): a ring per room in process',
        Br: 'the gateway with REDIS_URL, history and presence off',
        Brh: 'as Br with history on /chat: one stream per room in Redis (one EVALSHA per relayed packet)'
      },
      comparisons: [['Bh', 'B'], ['Brh', 'Br']],
      metrics: [
        { key: 'msgsPerSec', label: 'relay messages/s', unit: 'msg/s', better: 'higher', byVariant: by('msgsPerSec') },
        { key: 'cpuUsPerPublish', label: 'server CPU per publish', unit: 'µs', better: 'lower', byVariant: by('cpuUsPerPublish') },
        { key: 'redisCommandsPerPublish', label: 'Redis commands per publish', unit: 'commands', better: 'lower', byVariant: by('redisCommandsPerPublish') },
        { key: 'serverRssMB', label: 'server RSS after window', unit: 'MiB', better: 'lower', byVariant: by('serverRssMB') }
      ],
      serverCpuShare: {},
      notes: [
        `History costs ${(med('Bh', 'cpuUsPerPublish') - med('B', 'cpuUsPerPublish')).toFixed(0)} µs of server CPU per publish in process and ${(med('Brh', 'cpuUsPerPublish') - med('Br', 'cpuUsPerPublish')).toFixed(0)} µs with Redis (medians; each publish is delivered to 49 sockets), and ${(med('Brh', 'redisCommandsPerPublish') - med('Br', 'redisCommandsPerPublish')).toFixed(2)} Redis commands more per publish.`,
        `Memory per room holding ${HISTORY_SIZE} relay-sized messages: ${(memory.inProcessBytes / 1024).toFixed(1)} KiB in process (heap, ${ROOMS_MEASURED} rooms), ${(memory.redisBytes / 1024).toFixed(1)} KiB in Redis (MEMORY USAGE of one stream).`,
        `Fail-over: ${recovery.clients} clients in one room of an instance that was SIGKILLed reconnected to another (jittered over 500 ms) and re-joined with since while a message went out every ${PUBLISH_EVERY_MS} ms: all caught up ${(recovery.caughtUpMs / 1000).toFixed(2)} s after the kill; ${recovery.recovered} re-joins recovered; ${recovery.exactlyOnceInOrder} of ${recovery.clients} clients got every message from their first on exactly once, in order (${recovery.published} published).`
      ],
      trials: []
    } as ScenarioResult
  } finally {
    redis.disconnect()
  }
}

if (isEntry(import.meta.url)) loadGenerator()
