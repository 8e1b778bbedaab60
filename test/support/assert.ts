import type { LightMyRequestResponse } from 'fastify'
import type { ErrorCode } from '../../src/errors.js'

type Tap = { same: (found: unknown, wanted: unknown, message: string) => unknown }

/**
 * Asserts a §4 error response in one check: the status, the §6 code, a JSON
 * body of exactly `{ statusCode, code, error, message }` (no stack, no extra
 * field) whose statusCode matches the status.
 */
export function assertError (t: Tap, res: LightMyRequestResponse, statusCode: number, code: ErrorCode, what = `${statusCode} ${code}`): void {
  let body: Record<string, unknown> | undefined
  try {
    body = res.json()
  } catch {}
  const found = {
    status: res.statusCode,
    json: /^application\/json/.test(String(res.headers['content-type'])),
    fields: body === undefined ? null : Object.keys(body).sort(),
    statusCode: body?.statusCode,
    code: body?.code,
    error: typeof body?.error,
    message: typeof body?.message
  }
  const wanted = { status: statusCode, json: true, fields: ['code', 'error', 'message', 'statusCode'], statusCode, code, error: 'string', message: 'string' }
  t.same(found, wanted, `${what} (${res.body.slice(0, 200)})`)
}
