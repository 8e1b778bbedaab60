import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { Sql } from 'postgres'
import { KEY_ID_PATTERN } from '../keys/api-key.js'
import type { Page } from '../keys/types.js'
import { pageNewestFirst } from '../lists/cursor.js'
import { newRouteSecret } from '../routing/signing.js'
import type { LiveRouteConfig, RouteDefinition, RouteRecord } from '../routing/types.js'
import { serialized } from '../stores/serialized.js'

declare module 'fastify' {
  interface FastifyInstance {
    routeStore: RouteStore
  }
}

export interface RouteStore {
  /** The new route and its signing secret, shown once. */
  create: (input: RouteDefinition) => Promise<{ record: RouteRecord, secret: string }>
  list: (limit: number, cursor?: string) => Promise<Page<RouteRecord>>
  get: (id: string) => Promise<RouteRecord | undefined>
  replace: (id: string, input: RouteDefinition) => Promise<RouteRecord | undefined>
  remove: (id: string) => Promise<boolean>
  /** A new secret; the old one keeps signing for `gracePeriodSeconds`. */
  rotate: (id: string, gracePeriodSeconds: number) => Promise<{ record: RouteRecord, secret: string } | undefined>
  /** Every route with its secrets, oldest first (the order in which they match), as last loaded. */
  live: () => readonly LiveRouteConfig[]
  /** Listeners run on every instance after the routes changed anywhere, with the new list. */
  onChange: (listener: (routes: readonly LiveRouteConfig[]) => void) => void
}

export const ROUTES_CHANGED = 'routes:changed'
// Safety net behind the broadcast, as for policies.
const RELOAD_INTERVAL_MS = 30_000

interface RouteRow {
  id: string
  name: string
  namespace: RouteDefinition['namespace']
  events: string[]
  upstream: RouteDefinition['upstream']
  mode: RouteDefinition['mode']
  timeout_ms: number
  max_in_flight: number
  relay: boolean
  secret: string
  previous_secret: string | null
  previous_expires_at: Date | null
  created_at: Date
  updated_at: Date
}

function toRecord (row: RouteRow): RouteRecord {
  return {
    id: row.id,
    name: row.name,
    namespace: row.namespace,
    events: row.events as RouteDefinition['events'],
    upstream: row.upstream,
    mode: row.mode,
    timeoutMs: row.timeout_ms,
    maxInFlight: row.max_in_flight,
    relay: row.relay,
    createdAt: row.created_at,
    updatedAt: row.updated_at
  }
}

function toLive (row: RouteRow): LiveRouteConfig {
  return { record: toRecord(row), secret: row.secret, previousSecret: row.previous_secret, previousExpiresAt: row.previous_expires_at?.getTime() ?? 0 }
}

export function createRouteStore (sql: Sql, publish: (channel: string, message: string) => Promise<void>): RouteStore & { reload: () => Promise<void> } {
  let routes: readonly LiveRouteConfig[] = []
  const listeners: Array<(routes: readonly LiveRouteConfig[]) => void> = []

  // Routes are few: every change re-reads them all, one reload at a time so an older read never lands last.
  const reload = serialized(async () => {
    const rows = await sql<RouteRow[]>`select * from routes order by created_at, id`
    routes = rows.map(toLive)
    for (const listener of listeners) listener(routes)
  })

  async function announce (): Promise<void> {
    await reload()
    await publish(ROUTES_CHANGED, '').catch(() => {})
  }

  const valid = (id: string): boolean => KEY_ID_PATTERN.test(id)

  return {
    reload,
    async create (input) {
      const secret = newRouteSecret()
      const [row] = await sql<RouteRow[]>`
        insert into routes (id, name, namespace, events, upstream, mode, timeout_ms, max_in_flight, relay, secret)
        values (${randomUUID()}, ${input.name}, ${input.namespace}, ${input.events}, ${sql.json(input.upstream)}, ${input.mode},
                ${input.timeoutMs}, ${input.maxInFlight}, ${input.relay}, ${secret})
        returning *`
      await announce()
      return { record: toRecord(row), secret }
    },
    async list (limit, cursor) {
      return await pageNewestFirst<RouteRow, RouteRecord>(sql, 'routes', limit, cursor, toRecord)
    },
    async get (id) {
      if (!valid(id)) return undefined
      const [row] = await sql<RouteRow[]>`select * from routes where id = ${id}`
      return row === undefined ? undefined : toRecord(row)
    },
    async replace (id, input) {
      if (!valid(id)) return undefined
      const [row] = await sql<RouteRow[]>`
        update routes set name = ${input.name}, namespace = ${input.namespace}, events = ${input.events}, upstream = ${sql.json(input.upstream)},
          mode = ${input.mode}, timeout_ms = ${input.timeoutMs}, max_in_flight = ${input.maxInFlight}, relay = ${input.relay}, updated_at = now()
        where id = ${id} returning *`
      if (row === undefined) return undefined
      await announce()
      return toRecord(row)
    },
    async remove (id) {
      if (!valid(id)) return false
      const removed = (await sql`delete from routes where id = ${id}`).count > 0
      if (removed) await announce()
      return removed
    },
    async rotate (id, gracePeriodSeconds) {
      if (!valid(id)) return undefined
      const secret = newRouteSecret()
      const [row] = await sql<RouteRow[]>`
        update routes set
          previous_secret = ${gracePeriodSeconds > 0 ? sql`secret` : null},
          previous_expires_at = ${gracePeriodSeconds > 0 ? sql`now() + make_interval(secs => ${gracePeriodSeconds})` : null},
          secret = ${secret}, updated_at = now()
        where id = ${id} returning *`
      if (row === undefined) return undefined
      await announce()
      return { record: toRecord(row), secret }
    },
    live: () => routes,
    onChange (listener) {
      listeners.push(listener)
    }
  }
}

export default fp(async (app) => {
  const store = createRouteStore(app.sql, async (channel, message) => { await app.store.publish(channel, message) })
  await store.reload()
  app.decorate('routeStore', store)
  await app.store.subscribe(ROUTES_CHANGED, () => {
    store.reload().catch((err: unknown) => { app.log.warn({ err }, 'route reload failed; keeping the loaded routes') })
  })
  const timer = setInterval(() => { store.reload().catch(() => {}) }, RELOAD_INTERVAL_MS)
  timer.unref()
  app.addHook('onClose', async () => { clearInterval(timer) })
}, { name: 'route-store', fastify: '5.x', dependencies: ['db', 'store'] })
