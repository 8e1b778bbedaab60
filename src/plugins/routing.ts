import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { MessageRouter, PipelineRoute } from './messages.js'
import { EventPatterns } from '../routing/event-patterns.js'
import { createHttpTransport } from '../routing/http-transport.js'
import { SigningKeys } from '../routing/signing-keys.js'
import { backendPublishHandler } from '../routing/backend-publish.js'
import { UndeliveredLog, type UndeliveredWhy } from '../routing/undelivered-log.js'
import { createSocketIoTransport } from '../routing/socketio-transport.js'
import type { UpstreamTransport } from '../routing/transport.js'
import type { LiveRouteConfig, RouteEvent, RouteOutcome, UpstreamAnswer } from '../routing/types.js'
import { RouteUpstream } from '../routing/upstream.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Routes of SPEC §10 as they run on this instance: the packet path and the lifecycle hooks ask it. */
    forwarding: Forwarding
  }
}

/** A route as it runs: its matching, its upstream (kept across edits that do not touch it) and its secrets. */
export interface LiveRoute extends PipelineRoute {
  readonly id: string
  readonly name: string
  readonly namespace: string
  readonly patterns: EventPatterns
  readonly upstream: RouteUpstream
}

export interface Forwarding extends MessageRouter<LiveRoute> {
  /** The routes this instance runs, as it runs them (what an operator's view shows). */
  routes: () => readonly LiveRoute[]
}

// At shutdown, notify events still queued get this long to reach their backend (the close stays within SPEC §7's 10 s).
const NOTIFY_DRAIN_MS = 2000
// A replaced upstream's calls in flight get their timeout and this much more before it closes.
const RETIRE_SLACK_MS = 1000

const QUEUED: UpstreamAnswer = { ok: true }
const QUEUE_FULL: UpstreamAnswer = { ok: false, code: 'UNAVAILABLE', message: 'The backend service is not keeping up' }

interface Entry { route: LiveRoute, transportKey: string, keys: SigningKeys, config: LiveRouteConfig }

export default fp(async (app) => {
  const metrics = app.gatewayMetrics
  const maxDepth = app.config.maxJsonDepth
  // How this instance names itself in a Socket.IO upstream's handshake.
  const gateway = randomUUID()
  let entries = new Map<string, Entry>()
  let byNamespace = new Map<string, readonly LiveRoute[]>()
  const retiring = new Set<RouteUpstream>()
  let closed = false
  const undelivered = new UndeliveredLog(({ route, why, count, ids }) => {
    app.log.error({ route, why, count, ids }, 'routed events not delivered')
  })

  function reportsFor (name: string) {
    // Series bound once per route: a call then costs no label lookup.
    const outcomes = new Map<RouteOutcome, ReturnType<typeof metrics.upstreamRequests.labels>>()
    const duration = metrics.upstreamDuration.labels({ route: name })
    return {
      outcome (outcome: RouteOutcome, seconds?: number) {
        let series = outcomes.get(outcome)
        if (series === undefined) outcomes.set(outcome, series = metrics.upstreamRequests.labels({ route: name, outcome }))
        series.inc()
        if (seconds !== undefined) duration.observe(seconds)
      },
      breaker (open: boolean) {
        metrics.upstreamBreakerOpen.set({ route: name }, open ? 1 : 0)
        app.log.warn({ route: name }, open ? 'upstream circuit opened: calls are refused for 5 s' : 'upstream circuit closed')
        app.alerts.raise({ kind: open ? 'upstream_down' : 'upstream_up', route: name })
      },
      undeliverable (events: readonly RouteEvent[], why: UndeliveredWhy) {
        if (why === 'shutdown') metrics.upstreamRequests.inc({ route: name, outcome: 'dropped' }, events.length)
        undelivered.add(name, why, events)
      }
    }
  }

  function createTransport (config: LiveRouteConfig, keys: SigningKeys): UpstreamTransport {
    const { record } = config
    const upstream = record.upstream
    if (upstream.type === 'http') {
      return createHttpTransport({ url: upstream.url, timeoutMs: record.timeoutMs, maxInFlight: record.maxInFlight, maxDepth, signingKeys: keys.now })
    }
    return createSocketIoTransport({
      url: upstream.url,
      namespace: upstream.namespace,
      maxDepth,
      gateway,
      signingKeys: keys.now,
      onPublish: backendPublishHandler({
        namespace: () => entries.get(record.id)?.route.namespace,
        maxDepth,
        deliver: (tenant, request) => app.messages.deliverFromRoute(entries.get(record.id)?.route.name ?? record.name, tenant, request),
        fault: (err) => { app.reportFault(err, { where: 'publish' }) }
      }),
      onStateChange: (connected) => { app.log.info({ route: record.name, connected }, connected ? 'socket.io upstream connected' : 'socket.io upstream disconnected') }
    })
  }

  /** Closes an upstream no route uses any more once what it has in flight or queued is done (or the deadline passed). */
  function retire (entry: Entry, deadline: number): void {
    const { upstream } = entry.route
    retiring.add(upstream)
    upstream.drain(deadline).then(async () => { await upstream.close() }).catch((err: unknown) => {
      app.log.warn({ err, route: entry.config.record.name }, 'a replaced upstream did not close cleanly')
    }).finally(() => { retiring.delete(upstream) })
  }

  /** Applies the routes as loaded: unchanged upstreams are kept (with their breaker and queue), the rest built or closed. */
  function apply (configs: readonly LiveRouteConfig[]): void {
    // The route store's broadcast outlives this plugin at close: nothing is built once it closed.
    if (closed) return
    const next = new Map<string, Entry>()
    const namespaces = new Map<string, LiveRoute[]>()
    for (const config of configs) {
      const { record } = config
      const transportKey = JSON.stringify([record.upstream, record.timeoutMs, record.maxInFlight, record.name])
      const previous = entries.get(record.id)
      const keys = previous?.keys ?? new SigningKeys()
      keys.update(config)
      let upstream = previous?.route.upstream
      if (previous === undefined || previous.transportKey !== transportKey) {
        upstream = new RouteUpstream(createTransport(config, keys), record, reportsFor(record.name))
        metrics.upstreamBreakerOpen.set({ route: record.name }, 0)
        if (previous !== undefined) {
          upstream.adopt(previous.route.upstream)
          // Calls in flight on the old upstream finish (within their timeout) before it closes.
          retire(previous, Date.now() + previous.config.record.timeoutMs + RETIRE_SLACK_MS)
        }
      }
      const route: LiveRoute = {
        id: record.id,
        name: record.name,
        namespace: record.namespace,
        mode: record.mode,
        relay: record.relay,
        patterns: new EventPatterns(record.events),
        upstream: upstream!
      }
      next.set(record.id, { route, transportKey, keys, config })
      const list = namespaces.get(record.namespace) ?? []
      list.push(route)
      namespaces.set(record.namespace, list)
    }
    for (const [id, entry] of entries) {
      if (!next.has(id)) retire(entry, Date.now() + Math.max(NOTIFY_DRAIN_MS, entry.config.record.timeoutMs + RETIRE_SLACK_MS))
    }
    // A route renamed or deleted leaves no breaker series behind under its old name.
    const names = new Set([...next.values()].map((entry) => entry.config.record.name))
    for (const entry of entries.values()) if (!names.has(entry.config.record.name)) metrics.upstreamBreakerOpen.remove({ route: entry.config.record.name })
    entries = next
    byNamespace = namespaces
  }

  const forwarding: Forwarding = {
    match (namespace, event) {
      const routes = byNamespace.get(namespace)
      if (routes === undefined) return undefined
      for (let i = 0; i < routes.length; i++) if (routes[i].patterns.matches(event)) return routes[i]
      return undefined
    },
    send (route, event, bytes) {
      if (route.mode === 'request') return route.upstream.request(event)
      return route.upstream.notify(event, bytes) ? QUEUED : QUEUE_FULL
    },
    routes: () => [...entries.values()].map((entry) => entry.route)
  }

  apply(app.routeStore.live())
  app.routeStore.onChange(apply)
  app.decorate('forwarding', forwarding)
  app.messages.useRouter(forwarding)

  app.addHook('onClose', async () => {
    closed = true
    const deadline = Date.now() + NOTIFY_DRAIN_MS
    const upstreams = [...[...entries.values()].map((entry) => entry.route.upstream), ...retiring]
    await Promise.allSettled(upstreams.map(async (upstream) => { await upstream.drain(deadline) }))
    await Promise.allSettled(upstreams.map(async (upstream) => { await upstream.close() }))
    undelivered.flush()
  })
}, { name: 'routing', fastify: '5.x', dependencies: ['config', 'metrics', 'alerts', 'messages', 'route-store'] })
