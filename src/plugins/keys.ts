import fp from 'fastify-plugin'
import type { Sql } from 'postgres'
import { withDeadline } from '../deadline.js'
import { gatewayError } from '../errors.js'
import { formatApiKey, generateApiKey, KEY_ID_PATTERN, newSecret } from '../keys/api-key.js'
import { pageNewestFirst } from '../lists/cursor.js'
import { KEYS_ROTATED, type RotationNotice } from '../keys/rotation.js'
import type { ApiKeyRecord, KeyPatch, NewKeyInput, Page, Scope } from '../keys/types.js'
import type { SharedStore } from '../stores/shared-store.js'
import { DEFAULT_TENANT } from '../protocol/rooms.js'

declare module 'fastify' {
  interface FastifyInstance {
    keys: KeyStore
  }
}

export interface KeyStore {
  create: (input: NewKeyInput) => Promise<{ record: ApiKeyRecord, apiKey: string }>
  /** Newest first; only the keys of `tenant` when it is given. */
  list: (limit: number, cursor?: string, tenant?: string) => Promise<Page<ApiKeyRecord>>
  get: (id: string) => Promise<ApiKeyRecord | undefined>
  update: (id: string, patch: KeyPatch) => Promise<ApiKeyRecord | undefined>
  /** Idempotent: a revoked key keeps its first revocation time. */
  revoke: (id: string) => Promise<ApiKeyRecord | undefined>
  rotate: (id: string, gracePeriodSeconds: number) => Promise<{ record: ApiKeyRecord, apiKey: string } | undefined>
  /** The key for an authentication: from the cache when fresh, PostgreSQL otherwise; stale cache when PostgreSQL is down. */
  findForAuth: (id: string) => Promise<ApiKeyRecord | undefined>
  /** Records a successful use; written to `last_used_at` in batches. */
  markUsed: (id: string) => void
  /** Creates the first admin key when none exists; returns its full key, or undefined. */
  bootstrapAdmin: () => Promise<string | undefined>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Hears, on every instance, that a key changed (PATCH, revoke, rotate), after this instance's cached copy was dropped. */
    onKeyChange: (listener: (keyId: string) => void) => void
  }
}

/** Broadcast on every change so each instance drops its cached copy within a second. */
export const KEYS_CHANGED = 'keys:changed'
// A cached key is re-read after this long even without a broadcast (a lost message heals by itself).
const CACHE_FRESH_MS = 30_000
const LAST_USED_FLUSH_MS = 1000
// A hung PostgreSQL must not hang an authentication: past this the lookup counts as failed. A stopped
// server is refused at once (SPEC §7's 1 s); this bound is for one that accepts and never answers, and is
// longer than 1 s so that a burst queued behind the pool is not failed on a busy but healthy database.
const AUTH_LOOKUP_DEADLINE_MS = 1500

interface KeyRow {
  id: string
  name: string
  tenant: string
  secret_hash: Buffer
  previous_secret_hash: Buffer | null
  previous_expires_at: Date | null
  scopes: string[]
  policy_id: string | null
  allowed_ips: string[]
  rate_limit: ApiKeyRecord['rateLimit']
  max_connections: number | null
  expires_at: Date | null
  revoked_at: Date | null
  created_at: Date
  last_used_at: Date | null
  secret_generation: number
}

function toRecord (row: KeyRow): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    tenant: row.tenant,
    scopes: row.scopes as Scope[],
    policyId: row.policy_id,
    allowedIps: row.allowed_ips,
    rateLimit: row.rate_limit,
    maxConnections: row.max_connections,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    secretHash: row.secret_hash,
    previousSecretHash: row.previous_secret_hash,
    previousExpiresAt: row.previous_expires_at,
    secretGeneration: row.secret_generation
  }
}

/** A key naming a policy that no longer exists (deleted after the route checked it) is a bad request, not a 500. */
function unknownPolicy (err: unknown): never {
  if ((err as { code?: unknown }).code === '23503') throw gatewayError('VALIDATION_FAILED', 'body/policyId: no such policy')
  throw err
}

export function createKeyStore (sql: Sql, store: SharedStore): KeyStore & { flushLastUsed: () => Promise<void>, forget: (id: string) => void } {
  const cache = new Map<string, { record: ApiKeyRecord, loadedAt: number }>()
  const used = new Set<string>()
  // Counts invalidations, so a read that raced one does not put its stale row back in the cache.
  let forgotten = 0

  async function load (id: string): Promise<ApiKeyRecord | undefined> {
    if (!KEY_ID_PATTERN.test(id)) return undefined
    const [row] = await sql<KeyRow[]>`select * from api_keys where id = ${id}`
    return row === undefined ? undefined : toRecord(row)
  }

  async function changed (record: ApiKeyRecord | undefined): Promise<ApiKeyRecord | undefined> {
    if (record === undefined) return undefined
    cache.set(record.id, { record, loadedAt: Date.now() })
    await store.publish(KEYS_CHANGED, record.id).catch(() => {})
    return record
  }

  function jsonb (value: unknown): unknown {
    return value === null || value === undefined ? null : sql.json(value as never)
  }

  return {
    async create (input) {
      const key = generateApiKey()
      const [row] = await sql<KeyRow[]>`
        insert into api_keys (id, name, tenant, secret_hash, scopes, policy_id, allowed_ips, rate_limit, max_connections, expires_at)
        values (${key.id}, ${input.name}, ${input.tenant ?? DEFAULT_TENANT}, ${key.secretHash}, ${input.scopes ?? []}, ${input.policyId ?? null},
                ${input.allowedIps ?? []}, ${jsonb(input.rateLimit) as never}, ${input.maxConnections ?? null}, ${input.expiresAt ?? null})
        returning *`.catch(unknownPolicy)
      return { record: toRecord(row), apiKey: key.apiKey }
    },

    async list (limit, cursor, tenant) {
      return await pageNewestFirst<KeyRow, ReturnType<typeof toRecord>>(sql, 'api_keys', limit, cursor, toRecord, tenant === undefined ? undefined : { tenant })
    },

    get: load,

    async update (id, patch) {
      if (!KEY_ID_PATTERN.test(id)) return undefined
      const columns: Record<string, unknown> = {}
      if (patch.name !== undefined) columns.name = patch.name
      if (patch.scopes !== undefined) columns.scopes = patch.scopes
      if (patch.policyId !== undefined) columns.policy_id = patch.policyId
      if (patch.allowedIps !== undefined) columns.allowed_ips = patch.allowedIps
      if (patch.rateLimit !== undefined) columns.rate_limit = jsonb(patch.rateLimit)
      if (patch.maxConnections !== undefined) columns.max_connections = patch.maxConnections
      if (patch.expiresAt !== undefined) columns.expires_at = patch.expiresAt
      if (Object.keys(columns).length === 0) return await load(id)
      const [row] = await sql<KeyRow[]>`update api_keys set ${sql(columns as Record<string, never>)} where id = ${id} returning *`.catch(unknownPolicy)
      return await changed(row === undefined ? undefined : toRecord(row))
    },

    async revoke (id) {
      if (!KEY_ID_PATTERN.test(id)) return undefined
      const [row] = await sql<KeyRow[]>`
        update api_keys set revoked_at = coalesce(revoked_at, now()) where id = ${id} returning *`
      return await changed(row === undefined ? undefined : toRecord(row))
    },

    async rotate (id, gracePeriodSeconds) {
      if (!KEY_ID_PATTERN.test(id)) return undefined
      const { secret, secretHash } = newSecret()
      const [row] = await sql<KeyRow[]>`
        update api_keys set
          previous_secret_hash = case when ${gracePeriodSeconds} > 0 then secret_hash else null end,
          previous_expires_at = case when ${gracePeriodSeconds} > 0 then now() + make_interval(secs => ${gracePeriodSeconds}) else null end,
          secret_hash = ${secretHash},
          secret_generation = secret_generation + 1
        where id = ${id} and revoked_at is null returning *`
      const record = await changed(row === undefined ? undefined : toRecord(row))
      if (record === undefined) return undefined
      const notice: RotationNotice = { keyId: id, generation: record.secretGeneration, graceUntil: record.previousExpiresAt?.getTime() ?? null }
      await store.publish(KEYS_ROTATED, JSON.stringify(notice)).catch(() => {})
      return { record, apiKey: formatApiKey(id, secret) }
    },

    async findForAuth (id) {
      const cached = cache.get(id)
      if (cached !== undefined && Date.now() - cached.loadedAt < CACHE_FRESH_MS) return cached.record
      const epoch = forgotten
      try {
        const record = await withDeadline(load(id), AUTH_LOOKUP_DEADLINE_MS, 'key lookup')
        // A change broadcast while this read was in flight may postdate what it read: use it once, do not cache it.
        if (record !== undefined && epoch === forgotten) cache.set(id, { record, loadedAt: Date.now() })
        return record
      } catch (err) {
        // PostgreSQL away: a key this instance knows keeps working on its cached state (SPEC §7).
        if (cached !== undefined) return cached.record
        throw err
      }
    },

    markUsed (id) {
      used.add(id)
    },

    async flushLastUsed () {
      if (used.size === 0) return
      const ids = [...used]
      used.clear()
      await sql`update api_keys set last_used_at = now() where id = any(${ids})`.catch(() => {
        for (const id of ids) used.add(id)
      })
    },

    forget (id) {
      forgotten++
      cache.delete(id)
    },

    async bootstrapAdmin () {
      return await sql.begin(async (tx) => {
        // One instance at a time, so a cluster starting together creates one key, not three.
        await tx`select pg_advisory_xact_lock(7270002)`
        const [existing] = await tx`select 1 from api_keys where 'admin' = any(scopes) and revoked_at is null limit 1`
        if (existing !== undefined) return undefined
        const key = generateApiKey()
        await tx`insert into api_keys (id, name, secret_hash, scopes) values (${key.id}, 'bootstrap admin', ${key.secretHash}, ${['admin']})`
        return key.apiKey
      })
    }
  }
}

export default fp(async (app) => {
  const keys = createKeyStore(app.sql, app.store)
  app.decorate('keys', keys)
  const listeners: Array<(keyId: string) => void> = []
  app.decorate('onKeyChange', (listener: (keyId: string) => void) => { listeners.push(listener) })
  // The cache first, then the listeners: what they read is the new record.
  await app.store.subscribe(KEYS_CHANGED, (id) => {
    keys.forget(id)
    for (const listener of listeners) listener(id)
  })
  const timer = setInterval(() => { void keys.flushLastUsed() }, LAST_USED_FLUSH_MS)
  timer.unref()
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await keys.flushLastUsed()
  })
}, { name: 'keys', fastify: '5.x', dependencies: ['db', 'store'] })
