// Scenario: request-mode routing (SPEC §10). The same client load (bench/lib/ack-load.ts)
// emits events with acks to: D, a bare Socket.IO backend answering the ack itself; Bh and
// Bs, the gateway with a route taking the event to that backend's HTTP endpoint or its
// Socket.IO namespace /spark (the backend's answer is the ack); Bm, the gateway relaying a
// plain `message` to the sender's room of two (no route: the per-relayed-event figure).
// (1) closed loop at saturation, (2) open loop at half of D's saturation rate: p50/p99 and
// the p50 the gateway adds, (3) the server of record's CPU per event (D's, or the gateway's).
import { Webhook } from 'standardwebhooks'
import { ACK_LOAD_FILE, DRAIN_MS, MAX_OUTSTANDING, type LoadStart, type RoundTrips } from '../lib/ack-load.js'
import { ADMIN_KEY } from '../lib/gateway-shape.js'
import { LOAD_CPU, pin, startLoad, startServer, type ServerHandle } from '../lib/processes.js'
import { byVariant, cpuShares, recordTrial, releaseRigs, VARIANT_DESCRIPTIONS, windowStart, windowStop, type BenchSettings, type Metric, type Rig, type ScenarioResult, type Series, type ServerSet } from '../lib/scenario.js'
import { median, sleep, summarize, trialOrder, waitFor } from '../lib/stats.js'

export const ROUTING_CLIENTS = 10
export const ROUTING_INFLIGHT = 32
/** The routes' maxInFlight: above the closed loop's 320 and the open loop's MAX_OUTSTANDING, so none is refused as overloaded. */
const MAX_IN_FLIGHT = 1024
const KEPT_UP = 0.98

interface Variant { label: string, description: string, event: string, rig: Rig }
/** An open-loop case: `rate` is half of `of`'s saturation rate, run by `labels` (D first). */
interface OpenCase { key: string, of: string, rate: number, labels: string[] }
type Admin = (method: string, path: string, body?: unknown) => Promise<unknown>

/** The gateway's admin API over HTTP, as an operator calls it. */
const adminOf = (gateway: ServerHandle): Admin => async (method, path, body) => {
  const res = await fetch(`${gateway.url}${path}`, { method, headers: { 'x-api-key': ADMIN_KEY, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
  return res.status === 204 ? undefined : await res.json()
}

/** A load generator with ROUTING_CLIENTS clients of `server` in rooms of two (tokens minted now: the pool's may be near their TTL). */
async function startRig (server: ServerHandle): Promise<Rig> {
  const subs = Array.from({ length: ROUTING_CLIENTS }, (_, i) => `route-${i}`)
  const tokens = await server.call<Array<string | null>>('mint', { subs })
  const load = await startLoad(ACK_LOAD_FILE)
  await load.call('connect', { url: server.url, tokens, subs })
  return { server, load }
}

/** Checks a round trip end to end: the ack carries the backend's answer; with `signedBy`, the backend's last HTTP call verifies. */
async function checkRoundTrip (v: Variant, backend: ServerHandle, signedBy?: string): Promise<void> {
  const ack = await v.rig.load.call<{ ok?: boolean, id?: string, data?: { status?: string, seq?: number } }>('check', { event: v.event })
  const answered = v.label === 'Bm' ? ack.data === undefined : ack.data?.status === 'accepted' && ack.data.seq === -1
  if (ack.ok !== true || typeof ack.id !== 'string' || !answered) throw new Error(`${v.label} ${v.event}: unexpected ack ${JSON.stringify(ack)}`)
  if (signedBy === undefined) return
  const call = await backend.call<{ headers: Record<string, string>, body: string }>('lastCall')
  const event = new Webhook(signedBy).verify(call.body, call.headers) as { id: string, event: string }
  if (event.id !== ack.id || event.event !== v.event) throw new Error(`${v.label}: the backend's call was ${JSON.stringify(event)}, not ${ack.id}`)
}

/** One window: the load starts, ramps, then the server of record's and the backend's CPU and the load's counts cover `seconds`. */
async function measure (v: Variant, backend: ServerHandle, start: LoadStart, seconds: number, rampMs: number): Promise<{ cpuUs: number, share: number, wait: number, backendShare: number, trips: RoundTrips }> {
  const { server, load } = v.rig
  await load.call('start', start)
  await sleep(rampMs)
  await Promise.all([windowStart(server), windowStart(backend), load.call('mark')])
  await sleep(seconds * 1000)
  const [window, backendWindow] = await Promise.all([windowStop(server), windowStop(backend), load.call('end')])
  const trips = await load.call<RoundTrips>('stop', {}, DRAIN_MS + 30_000)
  if (trips.refused > 0) throw new Error(`${v.label}: ${trips.refused} round trips refused, the first: ${trips.firstRefusal ?? ''}`)
  await sleep(200)
  return { cpuUs: window.cpuUs, share: window.cpuUs / window.elapsedUs, wait: window.runQueueWaitUs / window.elapsedUs, backendShare: backendWindow.cpuUs / backendWindow.elapsedUs, trips }
}

export async function run (settings: BenchSettings, servers: ServerSet): Promise<ScenarioResult> {
  const [gateway, direct] = await Promise.all([servers.get('B'), servers.get('D')])
  // The routed-to backend sits beside the load generator, as PostgreSQL and Redis do: CPU 0 runs only the server of record.
  const backend = await startServer('backend', { label: 'backend' })
  pin(backend.child, LOAD_CPU)
  const admin = adminOf(gateway)
  const routeIds: string[] = []
  const rigs: Rig[] = []
  try {
    const backendUrl = backend.url
    const definition = { namespace: '/chat', mode: 'request', maxInFlight: MAX_IN_FLIGHT }
    const http = await admin('POST', '/v1/routes', { ...definition, name: `bench-http-${process.pid}`, events: ['order:http'], upstream: { type: 'http', url: `${backendUrl}/spark` } }) as { id: string, secret: string }
    const io = await admin('POST', '/v1/routes', { ...definition, name: `bench-io-${process.pid}`, events: ['order:io'], upstream: { type: 'socketio', url: backendUrl, namespace: '/spark' } }) as { id: string }
    routeIds.push(http.id, io.id)
    await waitFor('the gateway\'s Socket.IO upstream to connect', async () => await backend.call<number>('upstreamSockets') > 0, 10_000)
    await sleep(250)

    const gatewayRig = await startRig(gateway)
    rigs.push(gatewayRig)
    const directRig = await startRig(direct)
    rigs.push(directRig)
    const variants: Variant[] = [
      { label: 'D', description: 'direct: the client calls a bare Socket.IO backend (socket.io on node:http, /chat), which acks { ok, id, data } itself', event: 'order:direct', rig: directRig },
      { label: 'Bh', description: `the gateway (B) with a route taking the event to the backend's HTTP endpoint (node:http, POST answered { data }), request mode, maxInFlight ${MAX_IN_FLIGHT}`, event: 'order:http', rig: gatewayRig },
      { label: 'Bs', description: 'the gateway (B) with a route taking the event to the backend\'s Socket.IO namespace /spark (its `spark:event` ack { data }), request mode', event: 'order:io', rig: gatewayRig },
      { label: 'Bm', description: 'the gateway (B) relaying a plain `message` to the sender\'s room of two (no route): the per-relayed-event figure', event: 'message', rig: gatewayRig }
    ]
    const labels = variants.map((v) => v.label)
    const variant = new Map(variants.map((v) => [v.label, v]))
    await checkRoundTrip(variant.get('D')!, backend)
    await checkRoundTrip(variant.get('Bh')!, backend, http.secret)
    await checkRoundTrip(variant.get('Bs')!, backend)
    await checkRoundTrip(variant.get('Bm')!, backend)

    const series: Series = {}
    const trials: Array<Record<string, unknown>> = []
    const closed = (v: Variant): LoadStart => ({ event: v.event, inflight: ROUTING_INFLIGHT })
    for (const v of variants) await measure(v, backend, closed(v), settings.warmupSeconds, 0)
    for (let t = 0; t < settings.trials; t++) {
      for (const label of trialOrder(labels, t)) {
        const m = await measure(variant.get(label)!, backend, closed(variant.get(label)!), settings.seconds, 500)
        const values = {
          roundTripsPerSec: m.trips.ackedInWindow / (m.trips.elapsedMs / 1000),
          p50Ms: m.trips.p50Ms,
          p99Ms: m.trips.p99Ms,
          cpuUsPerEvent: m.cpuUs / m.trips.ackedInWindow,
          deliveriesPerEvent: m.trips.deliveries / m.trips.ackedInWindow,
          backendCpuShare: m.backendShare,
          serverCpuShare: m.share,
          serverWaitShare: m.wait,
          loadCpuShare: m.trips.loadCpuShare,
          loadWaitShare: m.trips.loadWaitShare
        }
        recordTrial(series, label, values)
        trials.push({ phase: 'saturation', trial: t, variant: label, ...values, trips: m.trips })
      }
    }

    // Open loop at half of a saturation rate (in hundreds): D's for every variant (the brief's), and each
    // route's own beside D at the same rate. The unsaturated cases run first: a backlog would spill into the next.
    const half = (label: string): number => Math.round(median(series[label].roundTripsPerSec) / 200) * 100
    const cases: OpenCase[] = [
      { key: 'ownBh', of: 'Bh', rate: half('Bh'), labels: ['D', 'Bh'] },
      { key: 'ownBs', of: 'Bs', rate: half('Bs'), labels: ['D', 'Bs'] },
      { key: 'halfD', of: 'D', rate: half('D'), labels }
    ]
    const rampMs = settings.quick ? 500 : 1000
    for (const v of variants) await measure(v, backend, { event: v.event, rate: cases[0].rate }, settings.warmupSeconds, 0)
    for (const c of cases) {
      for (let t = 0; t < settings.trials; t++) {
        for (const label of trialOrder(c.labels, t)) {
          const v = variant.get(label)!
          const m = await measure(v, backend, { event: v.event, rate: c.rate }, settings.seconds, rampMs)
          const values = {
            achieved: m.trips.ackedInWindow / (m.trips.elapsedMs / 1000),
            p50Ms: m.trips.p50Ms,
            p99Ms: m.trips.p99Ms,
            cpuUsPerEvent: m.cpuUs / m.trips.ackedInWindow,
            serverCpuPct: m.share * 100,
            sendLagP99Ms: m.trips.sendLagP99Ms,
            notSent: m.trips.notSent
          }
          recordTrial(series, label, Object.fromEntries(Object.entries(values).map(([k, x]) => [`${c.key}.${k}`, x])))
          trials.push({ phase: c.key, rate: c.rate, trial: t, variant: label, ...values, trips: m.trips })
        }
      }
      // The p50 the gateway adds, per trial pair (trial t of a gateway variant against trial t of D).
      for (const label of c.labels.slice(1)) series[label][`${c.key}.addedP50Ms`] = series[label][`${c.key}.p50Ms`].map((p50, i) => p50 - series.D[`${c.key}.p50Ms`][i])
    }
    return result(settings, variants, series, trials, cases, rampMs)
  } finally {
    for (const id of routeIds) await admin('DELETE', `/v1/routes/${id}`).catch(() => {})
    await releaseRigs(rigs)
    await backend.stop().catch(() => {})
  }
}

const VIA: Record<string, string> = { Bh: 'via HTTP', Bs: 'via Socket.IO', Bm: 'relayed message' }
/** Where a route's extra CPU per event goes (the goal rows' cost): D's round trip with the gateway's checks, plus this, on the same core. */
const SECOND_HOP: Record<string, string> = {
  Bh: 'the gateway does D\'s whole round trip with its checks, then an HTTP/1.1 request per event on the same core: signed, through undici\'s dispatch API, one request per keep-alive connection at a time (at saturation one connection per event in flight, so about one write and one read syscall per event); see CPU per event',
  Bs: 'the gateway does D\'s whole round trip with its checks, then a second Socket.IO round trip to the backend (encode, write, ack decode) on the same core; see CPU per event'
}
const ADDED_P50_GOAL = { op: '<=' as const, value: 0.5, text: 'added p50 ≤ 0.5 ms', absolute: true }
const kRate = (rate: number): string => `${(rate / 1000).toFixed(1)}k/s`

/** An open-loop case's rows: achieved rate, p50/p99, the p50 each gateway variant adds to D's (a goal for the routes), and with `cpu` its CPU rows. */
function openRows (c: OpenCase, series: Series, cpu: boolean): Metric[] {
  const by = (key: string, labels = c.labels): Metric['byVariant'] => byVariant(series, labels)(`${c.key}.${key}`)
  const at = `@${kRate(c.rate)} (½ ${c.of}'s saturation)`
  return [
    { key: `${c.key}.achieved`, label: `${at}: achieved rate`, unit: '/s', better: 'higher', byVariant: by('achieved') },
    { key: `${c.key}.p50Ms`, label: `${at}: ack latency p50`, unit: 'ms', better: 'lower', byVariant: by('p50Ms') },
    { key: `${c.key}.p99Ms`, label: `${at}: ack latency p99`, unit: 'ms', better: 'lower', byVariant: by('p99Ms') },
    ...c.labels.slice(1).map((label): Metric => ({
      key: `${c.key}.addedP50Ms.${label}`,
      label: `${at}: added p50, ${VIA[label]} (${label} − D)`,
      unit: 'ms',
      better: 'lower',
      byVariant: by('addedP50Ms', [label]),
      ...(label !== 'Bm' ? { goal: { ...ADDED_P50_GOAL, of: label } } : {})
    })),
    ...(cpu
      ? [
          { key: `${c.key}.cpuUsPerEvent`, label: `${at}: server CPU per event`, unit: 'µs', better: 'lower' as const, byVariant: by('cpuUsPerEvent') },
          { key: `${c.key}.serverCpuPct`, label: `${at}: server CPU`, unit: '% of a core', better: 'lower' as const, byVariant: by('serverCpuPct') }
        ]
      : [])
  ]
}

function result (settings: BenchSettings, variants: Variant[], series: Series, trials: Array<Record<string, unknown>>, cases: OpenCase[], rampMs: number): ScenarioResult {
  const labels = variants.map((v) => v.label)
  const by = byVariant(series, labels)
  const med = (label: string, key: string): number => summarize(series[label][key]).median
  const pct = (x: number): string => `${(x * 100).toFixed(0)}%`
  const metrics: Metric[] = [
    ...labels.slice(1).map((label): Metric => ({
      key: `roundTripsPerSec.${label}`,
      label: `saturation, ${VIA[label]}: round trips/s`,
      unit: '/s',
      better: 'higher',
      byVariant: byVariant(series, ['D', label])('roundTripsPerSec'),
      ...(label !== 'Bm' ? { goal: { op: '>=' as const, value: 0.7, text: `${label}/D ≥ 0.7`, of: label, to: 'D', cost: SECOND_HOP[label] } } : {})
    })),
    { key: 'p50Ms', label: `saturation: ack latency p50 (${ROUTING_CLIENTS * ROUTING_INFLIGHT} in flight)`, unit: 'ms', better: 'lower', byVariant: by('p50Ms') },
    { key: 'p99Ms', label: 'saturation: ack latency p99', unit: 'ms', better: 'lower', byVariant: by('p99Ms') },
    { key: 'cpuUsPerEvent', label: 'saturation: server CPU per event', unit: 'µs', better: 'lower', byVariant: by('cpuUsPerEvent') },
    // D's saturation case (the brief's rate) first, with its CPU rows; then each route at half of its own.
    ...[...cases].sort((x, y) => Number(y.of === 'D') - Number(x.of === 'D')).flatMap((c) => openRows(c, series, c.of === 'D'))
  ]
  const keptUp = cases.flatMap((c) => c.labels.map((l) => {
    const share = med(l, `${c.key}.achieved`) / c.rate
    return `${l} @ ${kRate(c.rate)} ${share >= KEPT_UP ? 'kept up' : 'did not keep up'} (${(share * 100).toFixed(1)}%, server CPU ${med(l, `${c.key}.serverCpuPct`).toFixed(0)}%, ` +
      `generator send lag p99 ${med(l, `${c.key}.sendLagP99Ms`).toFixed(1)} ms, ${med(l, `${c.key}.notSent`).toFixed(0)} due but never sent)`
  }))
  return {
    name: 'routing',
    title: `Routing, request mode: ${ROUTING_CLIENTS} clients, ${ROUTING_INFLIGHT} acks in flight each at saturation, then open loop at half of D's saturation and at half of each route's own`,
    params: { clients: ROUTING_CLIENTS, inflight: ROUTING_INFLIGHT, maxInFlight: MAX_IN_FLIGHT, openLoop: cases, maxOutstanding: MAX_OUTSTANDING, seconds: settings.seconds, rampMs, trials: settings.trials, warmupSeconds: settings.warmupSeconds },
    variants: Object.fromEntries(variants.map((v) => [v.label, v.description])),
    metrics,
    comparisons: [['Bh', 'D'], ['Bs', 'D'], ['Bm', 'D'], ['Bh', 'Bm'], ['Bs', 'Bm']],
    ...cpuShares(series, labels),
    notes: [
      `The server of record (CPU 0) is D's backend process for D and the gateway for Bh, Bs and Bm (${VARIANT_DESCRIPTIONS.B}). The routed-to backend is a second process of bench/lib/backend.ts on CPU 1 beside the load generator, as PostgreSQL and Redis are: ` +
        `it used ${pct(med('Bh', 'backendCpuShare'))} (Bh) and ${pct(med('Bs', 'backendCpuShare'))} (Bs) of that core at saturation, which the Load line counts as the generator's run-queue wait. The Load line is the saturation windows'.`,
      'Routes made through POST /v1/routes with the admin key (`order:http` → HTTP upstream, `order:io` → Socket.IO upstream /spark, request mode) and deleted afterwards; the bench key\'s policy allows every /chat event. The backend does not verify signatures per call; one HTTP call of the set-up is verified with standardwebhooks, and each variant\'s ack checked once.',
      `Server CPU per event: Bh/Bm and Bs/Bm quote the routed event against the relayed one (Bm's \`message\` reaches the sender's one room partner: ${med('Bm', 'deliveriesPerEvent').toFixed(2)} deliveries per event; a routed event reaches nobody but the backend).`,
      `Open loop as in the open-loop scenario: message k due at t0 + k/rate from a 1 ms timer, latency from that intended time; at most ${MAX_OUTSTANDING} on the wire (below the routes' maxInFlight). Messages due in the window but still held back when it closed count with their wait until the drain ended (a lower bound). Added p50 is per trial pair, gateway p50 − D p50; a variant that did not keep up reports its backlog, not a hop. Kept up = ≥ ${KEPT_UP * 100}% of the rate: ${keptUp.join('; ')}.`
    ],
    trials
  }
}
