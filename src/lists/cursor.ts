import type { Sql } from 'postgres'
import { KEY_ID_PATTERN } from '../keys/api-key.js'
import { gatewayError } from '../errors.js'
import type { Page } from '../keys/types.js'

/** Opaque list cursors: the sort key of the last row, base64url JSON. */
export function encodeCursor (parts: Array<string | number>): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url')
}

export function decodeCursor (cursor: string, shape: Array<'string' | 'number'>): Array<string | number> {
  try {
    const parts: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    // eslint-disable-next-line valid-typeof -- shape holds typeof names: 'string' or 'number'
    if (Array.isArray(parts) && parts.length === shape.length && parts.every((p, i) => typeof p === shape[i])) return parts as Array<string | number>
  } catch {}
  throw gatewayError('VALIDATION_FAILED', 'cursor is not valid')
}

/**
 * How list queries write the time part of a cursor: UTC with microseconds, so
 * the text neither depends on the session's DateStyle or TimeZone nor rounds
 * (a rounded time would skip or repeat rows at page edges).
 */
export const CURSOR_TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
const CURSOR_TIME = /^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\.[0-9]{6}Z$/

/** A `(createdAt, id)` cursor; anything PostgreSQL could not read back is VALIDATION_FAILED here, not a 500 there. */
export function decodeTimeCursor (cursor: string): { at: string, id: string } {
  const [at, id] = decodeCursor(cursor, ['string', 'string']) as [string, string]
  const time = CURSOR_TIME.exec(at)?.[1]
  // Round-tripping through Date refuses what the regex lets through: month 13, February 30, year 0.
  const ms = time === undefined ? NaN : Date.parse(`${time}Z`)
  const valid = Number.isFinite(ms) && new Date(ms).getUTCFullYear() >= 1 && new Date(ms).toISOString().slice(0, 19) === time
  if (!valid || !KEY_ID_PATTERN.test(id)) throw gatewayError('VALIDATION_FAILED', 'cursor is not valid')
  return { at, id }
}

/**
 * One page of a table listed newest first, by `(created_at, id)` keyset: the
 * key, policy and route lists share it. `table` is one of ours, never user
 * input; so is the column of `where` (its value is a parameter).
 */
export async function pageNewestFirst<Row extends { id: string }, Item> (
  sql: Sql, table: 'api_keys' | 'policies' | 'routes', limit: number, cursor: string | undefined, toItem: (row: Row) => Item,
  where?: { tenant: string }
): Promise<Page<Item>> {
  const after = cursor === undefined ? undefined : decodeTimeCursor(cursor)
  const filters = [
    ...(where === undefined ? [] : [sql`tenant = ${where.tenant}`]),
    ...(after === undefined ? [] : [sql`(created_at, id) < (${after.at}::timestamptz, ${after.id})`])
  ]
  const condition = filters.length === 0 ? sql`` : filters.length === 1 ? sql`where ${filters[0]}` : sql`where ${filters[0]} and ${filters[1]}`
  const rows = await sql<Array<Row & { cursor_at: string }>>`
    select *, to_char(created_at at time zone 'UTC', ${CURSOR_TIME_FORMAT}) as cursor_at from ${sql(table)}
    ${condition}
    order by created_at desc, id desc limit ${limit + 1}`
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return { items: page.map(toItem), nextCursor: rows.length > limit ? encodeCursor([last.cursor_at, last.id]) : null }
}
