import fp from 'fastify-plugin'
import { decodeCursor, encodeCursor } from '../lists/cursor.js'
import type { Page } from '../keys/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The read side of the audit log: rows newest first, cursor-paged. */
    auditQuery: AuditQuery
  }
}

export interface AuditFilter { keyId?: string, outcome?: 'allowed' | 'refused', ip?: string, since?: string }

export interface AuditRowView {
  id: string
  at: Date
  keyId: string | null
  ip: string | null
  transport: string
  namespace: string | null
  outcome: string
  reason: string | null
  userAgent: string | null
  /** Attempts the row stands for: 1, or more for a summary of refusals made before any credential was read. */
  count: number
}

export interface AuditQuery {
  list: (filter: AuditFilter, limit: number, cursor?: string) => Promise<Page<AuditRowView>>
  /** Attempts of the key by outcome: sums of `count`, not numbers of rows. */
  counts: (keyId: string) => Promise<{ allowed: number, refused: number }>
}

interface AuditRow { id: string, at: Date, key_id: string | null, ip: string | null, transport: string, namespace: string | null, outcome: string, reason: string | null, user_agent: string | null, count: number }

export default fp(async (app) => {
  const { sql } = app
  app.decorate('auditQuery', {
    async list (filter, limit, cursor) {
      const before = cursor === undefined ? undefined : decodeCursor(cursor, ['string'])[0] as string
      if (before !== undefined && !/^[0-9]{1,19}$/.test(before)) decodeCursor('', ['string'])
      const conditions = [
        filter.keyId !== undefined ? sql`key_id = ${filter.keyId}` : undefined,
        filter.outcome !== undefined ? sql`outcome = ${filter.outcome}` : undefined,
        filter.ip !== undefined ? sql`ip = ${filter.ip}` : undefined,
        filter.since !== undefined ? sql`at >= ${filter.since}::timestamptz` : undefined,
        before !== undefined ? sql`id < ${before}::bigint` : undefined
      ].filter((c) => c !== undefined)
      const where = conditions.length === 0 ? sql`` : sql`where ${conditions.reduce((acc, c) => sql`${acc} and ${c}`)}`
      const rows = await sql<AuditRow[]>`select * from auth_attempts ${where} order by id desc limit ${limit + 1}`
      const page = rows.slice(0, limit)
      return {
        items: page.map((r) => ({ id: String(r.id), at: r.at, keyId: r.key_id, ip: r.ip, transport: r.transport, namespace: r.namespace, outcome: r.outcome, reason: r.reason, userAgent: r.user_agent, count: r.count })),
        nextCursor: rows.length > limit ? encodeCursor([String(page[page.length - 1].id)]) : null
      }
    },
    async counts (keyId) {
      const rows = await sql<Array<{ outcome: string, n: string }>>`
        select outcome, sum(count) as n from auth_attempts where key_id = ${keyId} group by outcome`
      const count = (outcome: string): number => Number(rows.find((r) => r.outcome === outcome)?.n ?? 0)
      return { allowed: count('allowed'), refused: count('refused') }
    }
  } satisfies AuditQuery)
}, { name: 'audit-query', fastify: '5.x', dependencies: ['db'] })
