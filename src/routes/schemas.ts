import { Type, type TObject, type TProperties, type TSchema } from '@sinclair/typebox'
import { SCOPES } from '../keys/types.js'

/** Objects refuse unknown properties (SPEC §4: strict validation). */
export const Strict = <T extends TProperties>(properties: T): TObject<T> => Type.Object(properties, { additionalProperties: false })

export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String()
}, { $id: 'ErrorResponse' })

/** The error responses every protected route may give, for the OpenAPI document. */
export const errorResponses = (...statuses: number[]): Record<number, TSchema> =>
  Object.fromEntries(statuses.map((status) => [status, Type.Ref('ErrorResponse')]))

/** A timestamp in responses: handlers return Dates, the serializer writes ISO 8601. */
export const Timestamp = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' })
export const NullableTimestamp = Type.Union([Timestamp, Type.Null()])

export const ScopeSchema = Type.Union(SCOPES.map((s) => Type.Literal(s)))
export const IdParams = Strict({ id: Type.String({ maxLength: 200 }) })

/** `limit` and `cursor` arrive as strings: querystrings are never coerced either. */
export const PageQuery = {
  limit: Type.Optional(Type.String({ pattern: '^(100|[1-9][0-9]?)$', description: '1 to 100, default 50' })),
  cursor: Type.Optional(Type.String({ maxLength: 512 }))
}

export const pageOf = <T extends TSchema>(item: T) => Type.Object({
  items: Type.Array(item),
  nextCursor: Type.Union([Type.String(), Type.Null()])
})

export function pageLimit (limit: string | undefined): number {
  return limit === undefined ? 50 : Number(limit)
}
