import { randomUUID } from 'node:crypto'
import { KEY_ID_PATTERN } from '../keys/api-key.js'
import fp from 'fastify-plugin'
import type { Sql } from 'postgres'
import { gatewayError } from '../errors.js'
import { pageNewestFirst } from '../lists/cursor.js'
import type { Page } from '../keys/types.js'
import { compilePolicy, DENY_ALL, type CompiledPolicy } from '../policies/engine.js'
import type { PolicyRule } from '../policies/types.js'
import type { SharedStore } from '../stores/shared-store.js'
import { serialized } from '../stores/serialized.js'

declare module 'fastify' {
  interface FastifyInstance {
    policies: PolicyStore
  }
}

export interface PolicyRecord {
  id: string
  name: string
  rules: PolicyRule[]
  createdAt: Date
  updatedAt: Date
}

export interface PolicyInput { name: string, rules: PolicyRule[] }

export interface PolicyStore {
  create: (input: PolicyInput) => Promise<PolicyRecord>
  list: (limit: number, cursor?: string) => Promise<Page<PolicyRecord>>
  get: (id: string) => Promise<PolicyRecord | undefined>
  replace: (id: string, input: PolicyInput) => Promise<PolicyRecord | undefined>
  /** Refuses with CONFLICT while a key uses the policy. */
  remove: (id: string) => Promise<boolean>
  /**
   * The compiled policy for a key, from memory: called on every packet, so it
   * never waits. Unknown or missing policies deny everything.
   */
  compiled: (id: string | null) => CompiledPolicy
  /** Listeners run after a policy changed on any instance (live sockets re-check their rooms). */
  onChange: (listener: (id: string) => void) => void
}

export const POLICIES_CHANGED = 'policies:changed'
// Safety net behind the broadcast: every instance re-reads all policies this often.
const RELOAD_INTERVAL_MS = 30_000

interface PolicyRow { id: string, name: string, rules: PolicyRule[], created_at: Date, updated_at: Date }

function toRecord (row: PolicyRow): PolicyRecord {
  return { id: row.id, name: row.name, rules: row.rules, createdAt: row.created_at, updatedAt: row.updated_at }
}

interface PolicyStoreInternals {
  /** Re-reads one policy, or all of them. */
  reload: (id?: string) => Promise<void>
  /** Runs on every instance when a policy changed anywhere. */
  applyBroadcast: (id: string) => Promise<void>
}

export function createPolicyStore (sql: Sql, store: SharedStore): PolicyStore & PolicyStoreInternals {
  const compiledById = new Map<string, CompiledPolicy>()
  const listeners: Array<(id: string) => void> = []

  // One at a time, in the order asked: a periodic full reload must not put old rules back for 30 s.
  const reload = serialized(async (id?: string): Promise<void> => {
    const rows = id === undefined
      ? await sql<PolicyRow[]>`select * from policies`
      : await sql<PolicyRow[]>`select * from policies where id = ${id}`
    if (id === undefined) compiledById.clear()
    else compiledById.delete(id)
    for (const row of rows) compiledById.set(row.id, compilePolicy({ rules: row.rules }))
  })

  async function announce (id: string): Promise<void> {
    await reload(id)
    // Other instances reload on the broadcast; this one already has, but listeners run on the echo everywhere alike.
    await store.publish(POLICIES_CHANGED, id).catch(() => {})
  }

  return {
    reload,
    async applyBroadcast (id) {
      try {
        await reload(id)
      } finally {
        for (const listener of listeners) listener(id)
      }
    },
    async create (input) {
      const id = randomUUID()
      const [row] = await sql<PolicyRow[]>`
        insert into policies (id, name, rules) values (${id}, ${input.name}, ${sql.json(input.rules as never)}) returning *`
      await announce(id)
      return toRecord(row)
    },
    async list (limit, cursor) {
      return await pageNewestFirst<PolicyRow, ReturnType<typeof toRecord>>(sql, 'policies', limit, cursor, toRecord)
    },
    async get (id) {
      if (!KEY_ID_PATTERN.test(id)) return undefined
      const [row] = await sql<PolicyRow[]>`select * from policies where id = ${id}`
      return row === undefined ? undefined : toRecord(row)
    },
    async replace (id, input) {
      if (!KEY_ID_PATTERN.test(id)) return undefined
      const [row] = await sql<PolicyRow[]>`
        update policies set name = ${input.name}, rules = ${sql.json(input.rules as never)}, updated_at = now()
        where id = ${id} returning *`
      if (row === undefined) return undefined
      await announce(id)
      return toRecord(row)
    },
    async remove (id) {
      if (!KEY_ID_PATTERN.test(id)) return false
      const removed = await sql.begin(async (tx) => {
        const [inUse] = await tx`select 1 from api_keys where policy_id = ${id} limit 1 for share`
        if (inUse !== undefined) throw gatewayError('CONFLICT', 'The policy is in use by at least one key')
        return (await tx`delete from policies where id = ${id}`).count > 0
      }).catch((err: unknown) => {
        // A key given this policy after the check above: the foreign key refuses the delete.
        if ((err as { code?: unknown }).code === '23503') throw gatewayError('CONFLICT', 'The policy is in use by at least one key')
        throw err
      })
      if (removed) await announce(id)
      return removed
    },
    compiled (id) {
      return id === null ? DENY_ALL : compiledById.get(id) ?? DENY_ALL
    },
    onChange (listener) {
      listeners.push(listener)
    }
  }
}

export default fp(async (app) => {
  const policies = createPolicyStore(app.sql, app.store)
  await policies.reload()
  app.decorate('policies', policies)
  await app.store.subscribe(POLICIES_CHANGED, (id) => {
    policies.applyBroadcast(id).catch((err: unknown) => { app.log.warn({ err, policyId: id }, 'policy reload failed; keeping the cached copy') })
  })
  const timer = setInterval(() => { policies.reload().catch(() => {}) }, RELOAD_INTERVAL_MS)
  timer.unref()
  app.addHook('onClose', async () => { clearInterval(timer) })
}, { name: 'policies', fastify: '5.x', dependencies: ['db', 'store'] })
