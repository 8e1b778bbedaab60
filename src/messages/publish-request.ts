import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { NAMESPACES } from '../protocol/namespaces.js'
import { ROOM_NAME_PATTERN, TENANT_PATTERN } from '../protocol/rooms.js'

/**
 * A server-side publish (SPEC §4 `POST /v1/publish`, §10 `spark:publish`):
 * where, what, and its data. `tenant` is named by the callers that stand
 * above tenants (the root admin, a backend); a key publishes in its own.
 */
export const PublishRequestSchema = Type.Object({
  namespace: Type.Union(NAMESPACES.map((n) => Type.Literal(n))),
  room: Type.String({ minLength: 1, maxLength: 256, pattern: ROOM_NAME_PATTERN }),
  event: Type.String({ minLength: 1, maxLength: 128 }),
  data: Type.Unknown(),
  tenant: Type.Optional(Type.String({ pattern: TENANT_PATTERN }))
}, { additionalProperties: false, required: ['namespace', 'room', 'event', 'data'] })

export const PublishRequestCheck = TypeCompiler.Compile(PublishRequestSchema)
