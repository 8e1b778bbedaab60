import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import { namespaceRefusal, type Principal } from '../auth/principal.js'
import { isGatewayError, type GatewayError } from '../errors.js'
import type { RelayedMessage } from '../protocol/messages.js'
import { tenantRoom } from '../protocol/rooms.js'
import { routeEvent } from '../routing/route-event.js'
import { backendRefusal } from '../routing/backend-refusal.js'
import type { RouteEvent, UpstreamAnswer } from '../routing/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The one publish pipeline: a socket's relay and `POST /v1/publish` pass the same checks, in the same order. */
    messages: Messages
  }
}

export interface PublishRequest { namespace: string, room: string, event: string, data: unknown }

/** Where a published event comes from: a socket (left out of its own delivery), and its size on the wire. */
export interface PublishOrigin { exceptSocketId?: string, bytes: number }

/** A published event's outcome: its id, and the backend's answer when a route in request mode took it (SPEC §10). */
export interface Delivered { id: string, routed?: { data: unknown } }

/** A route of SPEC §10, as the pipeline sees it. */
export interface PipelineRoute { readonly mode: 'request' | 'notify', readonly relay: boolean }

/** Where client events go when a route takes them: the routing plugin (SPEC §10) plugs in here. */
export interface MessageRouter<R extends PipelineRoute = PipelineRoute> {
  /** The route taking a client event, or undefined: called on every packet, without allocating. */
  match: (namespace: string, event: string) => R | undefined
  /**
   * Sends an event (about `bytes` on the wire) along its route: request mode
   * answers what the backend answered, notify mode once queued.
   */
  send: (route: R, event: RouteEvent, bytes: number) => UpstreamAnswer | Promise<UpstreamAnswer>
}

export type DeliverResult = Delivered | GatewayError | Promise<Delivered | GatewayError>

export interface Messages {
  /**
   * The checks that count nothing, in SPEC order: the token's namespace
   * down-scope, then `authorize` publish (reserved names, policy). The
   * refusal, or undefined. A transport runs its own limits after this one.
   */
  refusePublish: (principal: Principal, namespace: string, room: string, event: string) => GatewayError | undefined
  /**
   * Spends the key's publish quota, then hands a client's event to the route
   * that takes it, if any (whose answer decides the outcome, and which may
   * also relay it), or else delivers it to the room's members on every
   * instance. A promise only when the quota or a backend needs a round trip.
   */
  deliver: (principal: Principal, request: PublishRequest, origin: PublishOrigin) => DeliverResult
  /** A backend's own publish (`spark:publish`, SPEC §10): delivered to the room of `tenant`, from the route. */
  deliverFromRoute: (routeName: string, tenant: string, request: PublishRequest) => DeliverResult
  /** Where routed client events go (set once, by the routing plugin). */
  useRouter: <R extends PipelineRoute>(router: MessageRouter<R>) => void
  /** The wire size of a message being delivered right now (what connection-state recovery stores is bounded in bytes). */
  bytesOf: (message: unknown) => number | undefined
}

export default fp(async (app) => {
  // The message being emitted and its size, for bytesOf (emitting is synchronous).
  let deliveringMessage: RelayedMessage | undefined
  let deliveringBytes = 0
  let router: MessageRouter | undefined
  // One warning per outage burst, not one per relayed packet.
  let historyWarnedAt = 0
  const historyDown = (err: unknown): void => {
    if (Date.now() - historyWarnedAt < 10_000) return
    historyWarnedAt = Date.now()
    app.log.warn({ err }, 'history unavailable: messages are relayed without being kept')
  }

  /**
   * Delivers to the room's members on every instance. A message reaches its
   * tenant's room only (SPEC §14); its `room` is the name the tenant's
   * clients know. In a namespace with history the room's history gives the
   * id (ordered within the room, SPEC §12) and keeps the message first, so a
   * member rejoining with `since` can never miss one it was sent. With the
   * history unavailable (Redis down) live sockets keep relaying (SPEC §7):
   * such a message gets a plain id, and is not kept.
   */
  function emit (from: RelayedMessage['from'], tenant: string, request: PublishRequest, origin: PublishOrigin, id?: string): DeliverResult {
    const { namespace, event } = request
    if (!app.history.keeps(namespace)) return broadcast(from, tenant, request, origin, id ?? randomUUID())
    const kept = app.history.append(namespace, tenantRoom(tenant, request.room), event, { room: request.room, from, data: request.data, ts: Date.now() })
    if (typeof kept === 'string') return broadcast(from, tenant, request, origin, kept)
    return kept.then((keptId) => broadcast(from, tenant, request, origin, keptId), (err: unknown) => {
      historyDown(err)
      return broadcast(from, tenant, request, origin, id ?? randomUUID())
    })
  }

  function broadcast (from: RelayedMessage['from'], tenant: string, { namespace, room, event, data }: PublishRequest, origin: PublishOrigin, id: string): Delivered {
    const message: RelayedMessage = { id, room, from, data, ts: Date.now() }
    const target = app.io.of(namespace).to(tenantRoom(tenant, room))
    deliveringMessage = message
    deliveringBytes = origin.bytes
    try {
      (origin.exceptSocketId === undefined ? target : target.except(origin.exceptSocketId)).emit(event, message)
    } finally {
      deliveringMessage = undefined
    }
    return message
  }

  /** A client's event: to its route when one takes it, else to the room. */
  function dispatch (principal: Principal, request: PublishRequest, origin: PublishOrigin): Delivered | GatewayError | Promise<Delivered | GatewayError> {
    const route = origin.exceptSocketId === undefined ? undefined : router?.match(request.namespace, request.event)
    if (route === undefined) return emit({ sub: principal.sub }, principal.tenant, request, origin)
    const id = randomUUID()
    const settle = (answer: UpstreamAnswer): Delivered | GatewayError | Promise<Delivered | GatewayError> => {
      if (!answer.ok) return backendRefusal(answer)
      const outcome = (delivered: Delivered): Delivered => route.mode === 'request' ? { id: delivered.id, routed: { data: answer.data } } : { id: delivered.id }
      // Relayed only once the backend took it: a refused order is not shown to the room.
      if (!route.relay) return outcome({ id })
      const relayed = emit({ sub: principal.sub }, principal.tenant, request, origin, id)
      const settled = (result: Delivered | GatewayError): Delivered | GatewayError => isGatewayError(result) ? result : outcome(result)
      return relayed instanceof Promise ? relayed.then(settled) : settled(relayed)
    }
    const answer = router!.send(route, routeEvent(id, 'event', principal, request.namespace, request.room, request.event, request.data, origin.exceptSocketId!), origin.bytes)
    return answer instanceof Promise ? answer.then(settle) : settle(answer)
  }

  app.decorate('messages', {
    refusePublish (principal, namespace, room, event) {
      return namespaceRefusal(principal, namespace) ?? app.authorize(principal, 'publish', namespace, room, event)
    },
    deliver (principal, request, origin) {
      if (principal.rateLimit === null) return dispatch(principal, request, origin)
      const quota = app.takePublishQuota(principal.keyId, principal.rateLimit)
      if (quota === undefined) return dispatch(principal, request, origin)
      if (!(quota instanceof Promise)) return quota
      return quota.then((refused) => refused ?? dispatch(principal, request, origin))
    },
    deliverFromRoute (routeName, tenant, request) {
      return emit({ sub: `route:${routeName}`, route: routeName }, tenant, request, { bytes: 0 })
    },
    useRouter (next) {
      // The router is only ever handed back the routes its own match returned.
      router = next as unknown as MessageRouter
    },
    bytesOf: (message) => message === deliveringMessage ? deliveringBytes : undefined
  } satisfies Messages)
}, { name: 'messages', fastify: '5.x', dependencies: ['authorize', 'rate-limit', 'io', 'history'] })
