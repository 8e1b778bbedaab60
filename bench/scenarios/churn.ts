// Scenario: connection churn beside idle traffic. IDLE sockets each sit in a
// room of their own and receive 1 msg/s from one publisher socket, which
// publishes round-robin at IDLE msg/s (steady, one message per ms, rather
// than one broadcast burst a second: delivery latency then shows how churn
// delays ordinary traffic, not a socket's place in a 1,000-socket fan-out).
// Meanwhile CHURN_RATE connections/s connect with a valid token and
// disconnect after LIFETIME_MS, on an open-loop schedule. Measured: server
// CPU per second and per churned connection, connect latency (from the
// intended connect time), delivery latency to the idle sockets (the publisher
// stamps its intended send time in the data), and every error.
import { fileURLToPath } from 'node:url'
import { startLoad, type ServerHandle } from '../lib/processes.js'
import { isEntry, serveLoadGenerator, VARIANT_DESCRIPTIONS, type BenchSettings, type ScenarioResult, type ServerSet, type WindowStats, byVariant, cpuShares, type Series, recordTrial, loadedWindow, releaseRigs, type Rig } from '../lib/scenario.js'
import { percentile, sleep, summarize, trialOrder, waitFor } from '../lib/stats.js'
import { usageNow, usageSince } from '../lib/sched.js'
import { ConnectRefused, decodeEvent, openMany, WireSocket, type WireOptions } from '../lib/wire.js'

const FILE = fileURLToPath(import.meta.url)
const NAMESPACE = '/chat'
export const CHURN_IDLE = 1000
/** Churned connections per second. */
export const CHURN_RATE = 300
/** How long a churned socket stays connected. */
const LIFETIME_MS = 1000
/** Distinct tokens the churned sockets cycle through (each reused by one socket after another). */
const CHURN_TOKENS = 400
/** Connects waiting for their CONNECT at once before the generator holds back (a stalled server must not get thousands). */
const MAX_PENDING_CONNECTS = 1000
const MAX_OUTSTANDING_PUBLISHES = 5000
const DRAIN_MS = 15_000
const idleRoom = (i: number): string => `churn-idle-${i}`
const DATA_PREFIX = Buffer.from('"data":{"t":')

// ---- load-generator side (its own process, pinned to the load CPU) ----

interface Credentials { tokens: Array<string | null>, subs: string[] }

const authOf = (c: Credentials, i: number): Record<string, unknown> => c.tokens[i] === null ? { sub: c.subs[i] } : { token: c.tokens[i] }

interface WindowCounts {
  elapsedMs: number
  loadCpuShare: number
  loadWaitShare: number
  connects: number
  closes: number
  connectP50Ms: number
  connectP99Ms: number
  deliveries: number
  deliveryP50Ms: number
  deliveryP99Ms: number
  deliveryMaxMs: number
  published: number
}

interface Errors {
  /** CONNECT_ERROR answers (the gateway refused the handshake), by message. */
  refused: Record<string, number>
  /** Connects that failed otherwise (network error, closed before connecting). */
  connectErrors: number
  /** Churned sockets that lost their connection before their lifetime was up. */
  churnDropped: number
  /** Idle sockets (or the publisher) that lost their connection. */
  idleLost: number
  publishRefused: number
  /** Acked publishes whose delivery never arrived. */
  lostDeliveries: number
  /** Most connects (publishes) ever due but held back at MAX_PENDING_CONNECTS (MAX_OUTSTANDING_PUBLISHES): the server stalled them. */
  connectBacklog: number
  publishBacklog: number
}

function loadGenerator (): void {
  let url = ''
  let idle: WireSocket[] = []
  let publisher: WireSocket | undefined
  let churnCreds: Credentials = { tokens: [], subs: [] }
  let running = false
  let timer: NodeJS.Timeout | undefined
  let t0 = 0
  let pubRate = 0
  let churnRate = 0
  let nextPub = 0
  let nextChurn = 0
  let pubOutstanding = 0
  let pubAcked = 0
  let delivered = 0
  let churnLive = 0
  let pendingConnects = 0
  let inWindow = false
  let markedUsage = usageNow()
  let w = { connects: 0, closes: 0, deliveries: 0, published: 0, connectMs: [] as number[], deliveryMs: [] as number[] }
  let errors: Errors = { refused: {}, connectErrors: 0, churnDropped: 0, idleLost: 0, publishRefused: 0, lostDeliveries: 0, connectBacklog: 0, publishBacklog: 0 }
  const okPrefix = '[{"ok":true'

  const onDelivery = (frame: Buffer): void => {
    delivered++
    if (!inWindow) return
    w.deliveries++
    // The publisher's intended send time, read in place: ..."data":{"t":123.45}...
    const at = frame.indexOf(DATA_PREFIX)
    if (at >= 0) w.deliveryMs.push(performance.now() - parseFloat(frame.toString('latin1', at + DATA_PREFIX.length, at + DATA_PREFIX.length + 32)))
  }

  function publish (k: number): void {
    const intended = t0 + (k * 1000) / pubRate
    pubOutstanding++
    publisher!.emit('message', { room: idleRoom(k % idle.length), data: { t: intended } }, (frame, start) => {
      pubOutstanding--
      if (frame.toString('latin1', start, start + okPrefix.length) === okPrefix) {
        pubAcked++
        if (inWindow) w.published++
      } else {
        errors.publishRefused++
      }
    })
  }

  function churn (k: number): void {
    const intended = t0 + (k * 1000) / churnRate
    const j = k % churnCreds.tokens.length
    const options: WireOptions = { url, namespace: NAMESPACE, auth: authOf(churnCreds, j) }
    const socket = new WireSocket(options)
    churnLive++
    pendingConnects++
    let closed = false
    const close = (): void => {
      if (closed) return
      closed = true
      socket.close()
      churnLive--
      if (inWindow) w.closes++
    }
    socket.onClose = () => {
      // Lost before its lifetime was up (close() clears the connected flag first, so our own close does not land here).
      errors.churnDropped++
      if (!closed) { closed = true; churnLive-- }
    }
    socket.connect().then(() => {
      pendingConnects--
      if (inWindow) {
        w.connects++
        w.connectMs.push(performance.now() - intended)
      }
      setTimeout(close, LIFETIME_MS)
    }, (err: unknown) => {
      pendingConnects--
      if (err instanceof ConnectRefused) errors.refused[err.message] = (errors.refused[err.message] ?? 0) + 1
      else errors.connectErrors++
      closed = true
      churnLive--
      socket.terminate()
    })
  }

  // A 1 ms timer (Node's floor) starts whatever is due on both schedules.
  function tick (): void {
    if (!running) return
    const elapsed = performance.now() - t0
    const pubDue = Math.floor((elapsed * pubRate) / 1000) + 1
    while (nextPub < pubDue && pubOutstanding < MAX_OUTSTANDING_PUBLISHES) publish(nextPub++)
    errors.publishBacklog = Math.max(errors.publishBacklog, pubDue - nextPub)
    if (churnRate > 0) {
      const churnDue = Math.floor((elapsed * churnRate) / 1000) + 1
      while (nextChurn < churnDue && pendingConnects < MAX_PENDING_CONNECTS) churn(nextChurn++)
      errors.connectBacklog = Math.max(errors.connectBacklog, churnDue - nextChurn)
    }
    timer = setTimeout(tick, 1)
  }

  serveLoadGenerator({
    /** Connects the idle sockets (each joins its room) and the publisher; checks one delivery end to end. */
    connect: async (args: { url: string, idle: Credentials, publisher: Credentials, churn: Credentials }) => {
      url = args.url
      churnCreds = args.churn
      ;({ sockets: idle } = await openMany(args.idle.tokens.length, 100, (i) => ({ url, namespace: NAMESPACE, auth: authOf(args.idle, i) })))
      for (const [i, socket] of idle.entries()) {
        const joined = await socket.emitWithAck('join', { room: idleRoom(i) }) as { ok?: boolean }
        if (joined?.ok !== true) throw new Error(`join refused: ${JSON.stringify(joined)}`)
      }
      publisher = new WireSocket({ url, namespace: NAMESPACE, auth: authOf(args.publisher, 0) })
      await publisher.connect()
      const received = new Promise<unknown[]>((resolve) => { idle[7].onEvent = (frame) => { resolve(decodeEvent(frame, NAMESPACE)) } })
      const ack = await publisher.emitWithAck('message', { room: idleRoom(7), data: { t: 1.5 } }) as { ok: boolean, id: string }
      const [event, message] = await received as [string, { id: string, room: string, data: { t: number } }]
      if (ack.ok !== true || event !== 'message' || message.id !== ack.id || message.room !== idleRoom(7) || message.data.t !== 1.5) {
        throw new Error(`churn delivery check failed: ack ${JSON.stringify(ack)}, delivery ${JSON.stringify([event, message])}`)
      }
      for (const socket of [...idle, publisher]) {
        socket.onEvent = onDelivery
        socket.onClose = () => { errors.idleLost++ }
      }
      return { idle: idle.length }
    },
    /** Starts publishing (1 msg/s to each idle socket) and churning `churnRate` connections/s. */
    start: (args: { churnRate: number }) => {
      pubRate = idle.length
      churnRate = args.churnRate
      t0 = performance.now()
      nextPub = 0
      nextChurn = 0
      pubAcked = 0
      delivered = 0
      errors = { refused: {}, connectErrors: 0, churnDropped: 0, idleLost: 0, publishRefused: 0, lostDeliveries: 0, connectBacklog: 0, publishBacklog: 0 }
      running = true
      tick()
    },
    mark: () => {
      w = { connects: 0, closes: 0, deliveries: 0, published: 0, connectMs: [], deliveryMs: [] }
      inWindow = true
      markedUsage = usageNow()
    },
    collect: (): WindowCounts => {
      const usage = usageSince(markedUsage)
      inWindow = false
      return {
        elapsedMs: performance.now() - markedUsage.at,
        loadCpuShare: usage.cpuShare,
        loadWaitShare: usage.waitShare,
        connects: w.connects,
        closes: w.closes,
        connectP50Ms: percentile(w.connectMs, 50),
        connectP99Ms: percentile(w.connectMs, 99),
        deliveries: w.deliveries,
        deliveryP50Ms: percentile(w.deliveryMs, 50),
        deliveryP99Ms: percentile(w.deliveryMs, 99),
        deliveryMaxMs: percentile(w.deliveryMs, 100),
        published: w.published
      }
    },
    /** Stops both schedules; resolves once every churned socket has closed and every publish was acked and delivered. */
    stop: async (): Promise<Errors> => {
      running = false
      if (timer !== undefined) clearTimeout(timer)
      const deadline = performance.now() + DRAIN_MS
      while ((churnLive > 0 || pubOutstanding > 0 || delivered < pubAcked) && performance.now() < deadline) await sleep(20)
      errors.lostDeliveries = Math.max(0, pubAcked - delivered)
      if (churnLive > 0) errors.connectErrors += churnLive
      return errors
    },
    disconnect: () => { for (const socket of [...idle, ...(publisher !== undefined ? [publisher] : [])]) socket.close() }
  })
}

// ---- orchestrator side ----

async function startRig (server: ServerHandle): Promise<Rig> {
  // Fresh tokens: the run's pool was minted at start-up and may be near JWT_TTL by now.
  const mint = async (subs: string[]): Promise<Credentials> => ({ tokens: await server.call<Array<string | null>>('mint', { subs }), subs })
  const idle = await mint(Array.from({ length: CHURN_IDLE }, (_, i) => `churn-idle-${i}`))
  const publisher = await mint(['churn-publisher'])
  const churn = await mint(Array.from({ length: CHURN_TOKENS }, (_, j) => `churn-${j}`))
  const load = await startLoad(FILE)
  await load.call('connect', { url: server.url, idle, publisher, churn })
  await waitFor(`${server.label} to hold the idle sockets`, async () => await server.call<number>('sockets') === CHURN_IDLE + 1)
  return { server, load }
}

interface Phase { window: WindowStats, counts: WindowCounts, errors: Errors }

/** One phase: schedules on, a ramp, the measured window, schedules off, back to the idle sockets alone. */
async function phase (rig: Rig, churnRate: number, seconds: number, rampMs: number): Promise<Phase> {
  const { window, collected: counts } = await loadedWindow<WindowCounts>(rig, { churnRate }, seconds, rampMs)
  const errors = await rig.load.call<Errors>('stop', {}, DRAIN_MS + 30_000)
  await waitFor(`${rig.server.label} to be back to the idle sockets`, async () =>
    await rig.server.call<number>('sockets') === CHURN_IDLE + 1 && await rig.server.call<number>('connections') === CHURN_IDLE + 1, 30_000)
  await rig.server.call('settle')
  return { window, counts, errors }
}

const errorCount = (e: Errors): number =>
  Object.values(e.refused).reduce((a, b) => a + b, 0) + e.connectErrors + e.churnDropped + e.idleLost + e.publishRefused + e.lostDeliveries

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const labels = ['A', 'B']
  // Churned sockets reach their steady population after one lifetime.
  const rampMs = LIFETIME_MS + (settings.quick ? 250 : 500)
  const rigs = new Map<string, Rig>()
  try {
    for (const label of labels) rigs.set(label, await startRig(await servers.get(label)))
    for (const label of labels) await phase(rigs.get(label)!, CHURN_RATE, settings.warmupSeconds, rampMs)

    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    const errorNotes: string[] = []
    for (let t = 0; t < settings.trials; t++) {
      for (const label of trialOrder(labels, t)) {
        const rig = rigs.get(label)!
        // The idle sockets and their 1 msg/s alone, then with churn: the difference is churn's own cost.
        const background = await phase(rig, 0, settings.seconds / 2, 500)
        const churned = await phase(rig, CHURN_RATE, settings.seconds, rampMs)
        const { window, counts } = churned
        const seconds = window.elapsedUs / 1e6
        const bgPerSec = background.window.cpuUs / (background.window.elapsedUs / 1e6)
        const values = {
          churnPerSec: counts.connects / (counts.elapsedMs / 1000),
          cpuMsPerSec: window.cpuUs / seconds / 1000,
          cpuUsPerConn: window.cpuUs / counts.connects,
          marginalCpuUsPerConn: (window.cpuUs - bgPerSec * seconds) / counts.connects,
          bgCpuMsPerSec: bgPerSec / 1000,
          connectP50Ms: counts.connectP50Ms,
          connectP99Ms: counts.connectP99Ms,
          deliveryP50Ms: counts.deliveryP50Ms,
          deliveryP99Ms: counts.deliveryP99Ms,
          bgDeliveryP99Ms: background.counts.deliveryP99Ms,
          deliveriesPerSec: counts.deliveries / (counts.elapsedMs / 1000),
          errors: errorCount(churned.errors) + errorCount(background.errors),
          serverCpuShare: window.cpuUs / window.elapsedUs,
          serverWaitShare: window.runQueueWaitUs / window.elapsedUs,
          loadCpuShare: counts.loadCpuShare,
          loadWaitShare: counts.loadWaitShare
        }
        for (const [name, p] of [['background', background], ['churn', churned]] as const) {
          if (errorCount(p.errors) > 0 || p.errors.connectBacklog > 0 || p.errors.publishBacklog > 0) errorNotes.push(`trial ${t} ${label} ${name}: ${JSON.stringify(p.errors)}`)
        }
        recordTrial(series, label, values)
        trials.push({ trial: t, variant: label, ...values, background, churn: churned })
      }
    }

    const by = byVariant(series, labels)
    const med = (label: string, name: string): number => summarize(series[label][name]).median
    return {
      name: 'churn',
      title: `Churn: ${CHURN_IDLE} idle sockets receiving 1 msg/s each while ${CHURN_RATE} connections/s connect and leave after ${LIFETIME_MS / 1000} s`,
      params: { idle: CHURN_IDLE, churnRate: CHURN_RATE, lifetimeMs: LIFETIME_MS, churnTokens: CHURN_TOKENS, seconds: settings.seconds, backgroundSeconds: settings.seconds / 2, rampMs, trials: settings.trials },
      variants: { A: VARIANT_DESCRIPTIONS.A, B: VARIANT_DESCRIPTIONS.B },
      metrics: [
        { key: 'churnPerSec', label: 'churned connections', unit: '/s', better: 'higher', byVariant: by('churnPerSec') },
        { key: 'cpuMsPerSec', label: 'server CPU per second (idle traffic + churn)', unit: 'ms/s', better: 'lower', byVariant: by('cpuMsPerSec') },
        { key: 'cpuUsPerConn', label: 'server CPU per churned connection (whole window)', unit: 'µs', better: 'lower', byVariant: by('cpuUsPerConn') },
        { key: 'marginalCpuUsPerConn', label: '  of which churn (less the idle traffic alone)', unit: 'µs', better: 'lower', byVariant: by('marginalCpuUsPerConn') },
        { key: 'bgCpuMsPerSec', label: 'server CPU per second, idle traffic alone', unit: 'ms/s', better: 'lower', byVariant: by('bgCpuMsPerSec') },
        { key: 'connectP50Ms', label: 'connect latency p50', unit: 'ms', better: 'lower', byVariant: by('connectP50Ms') },
        { key: 'connectP99Ms', label: 'connect latency p99', unit: 'ms', better: 'lower', byVariant: by('connectP99Ms') },
        { key: 'deliveryP50Ms', label: 'idle delivery latency p50 under churn', unit: 'ms', better: 'lower', byVariant: by('deliveryP50Ms') },
        { key: 'deliveryP99Ms', label: 'idle delivery latency p99 under churn', unit: 'ms', better: 'lower', byVariant: by('deliveryP99Ms') },
        { key: 'bgDeliveryP99Ms', label: 'idle delivery latency p99 without churn', unit: 'ms', better: 'lower', byVariant: by('bgDeliveryP99Ms') }
      ],
      ...cpuShares(series, labels),
      notes: [
        `Each idle socket is alone in its room; one publisher socket sends round-robin at ${CHURN_IDLE} msg/s (1 msg/s per idle socket, one every ms) with its intended send time in the data, so delivery latency runs from when the message was due. ` +
          `Churned sockets connect on an open-loop schedule (${CHURN_RATE}/s, latency from the intended connect time), authenticate (B: one of ${CHURN_TOKENS} fresh tokens, reused in turn; A: { sub }), and close (DISCONNECT, then the transport) ${LIFETIME_MS} ms after connecting.`,
        'CPU per churned connection is the whole window\'s server CPU over the connections made in it (nothing subtracted); the "of which churn" row subtracts the CPU per second of a window with the idle traffic alone, measured just before.',
        `Errors (refused or failed connects, dropped sockets, refused publishes, lost deliveries), all windows: ${labels.map((l) => `${l} ${series[l].errors.reduce((a, b) => a + b, 0)}`).join(', ')}.`,
        ...(errorNotes.length > 0 ? [`Errors or held-back schedules (the server stalled the generator): ${errorNotes.join('; ')}.`] : []),
        `Delivered to the idle sockets during the churn windows: ${labels.map((l) => `${l} ${med(l, 'deliveriesPerSec').toFixed(0)}/s`).join(', ')} (target ${CHURN_IDLE}/s).`
      ],
      trials
    }
  } finally {
    await releaseRigs(rigs.values())
  }
}

if (isEntry(import.meta.url)) loadGenerator()
