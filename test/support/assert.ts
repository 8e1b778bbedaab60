import type { LightMyRequestResponse } from 'fastify'
import type { ErrorCode } from '../../src/errors.js'

type Tap = {
  equal: (found: unknown, wanted: unknown, message?: string) => unknown
  same: (found: unknown, wanted: unknown, message?: string) => unknown
  type: (found: unknown, wanted: string, message?: string) => unknown
  match: (found: unknown, pattern: RegExp, message?: string) => unknown
}

/**
 * Asserts a §4 error response: the status, the §6 code, and exactly the keys
 * `{ statusCode, code, error, message }` (nothing else, e.g. no stack or hash).
 */
export function assertError (t: Tap, res: LightMyRequestResponse, statusCode: number, code: ErrorCode, what = `${statusCode} ${code}`): void {
  t.equal(res.statusCode, statusCode, `${what}: status (${res.body.slice(0, 300)})`)
  t.match(res.headers['content-type'], /application\/json/, `${what}: JSON content type`)
  let body: Record<string, unknown>
  try {
    body = res.json()
  } catch {
    t.equal(res.body, '<json>', `${what}: body is JSON`)
    return
  }
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], `${what}: error body shape`)
  t.equal(body.statusCode, statusCode, `${what}: body.statusCode`)
  t.equal(body.code, code, `${what}: body.code`)
  t.type(body.error, 'string', `${what}: body.error`)
  t.type(body.message, 'string', `${what}: body.message`)
}
