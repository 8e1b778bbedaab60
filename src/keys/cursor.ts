import { gatewayError } from '../errors.js'

/** Opaque list cursors: the sort key of the last row, base64url JSON. */
export function encodeCursor (parts: Array<string | number>): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url')
}

export function decodeCursor (cursor: string, shape: Array<'string' | 'number'>): Array<string | number> {
  try {
    const parts: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (Array.isArray(parts) && parts.length === shape.length && parts.every((p, i) => typeof p === shape[i])) return parts as Array<string | number>
  } catch {}
  throw gatewayError('VALIDATION_FAILED', 'cursor is not valid')
}
