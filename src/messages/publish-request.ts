import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { NAMESPACES } from '../protocol/namespaces.js'

/** A server-side publish (SPEC §4 `POST /v1/publish`, §10 `spark:publish`): where, what, and its data. */
export const PublishRequestSchema = Type.Object({
  namespace: Type.Union(NAMESPACES.map((n) => Type.Literal(n))),
  room: Type.String({ minLength: 1, maxLength: 256 }),
  event: Type.String({ minLength: 1, maxLength: 128 }),
  data: Type.Unknown()
}, { additionalProperties: false, required: ['namespace', 'room', 'event', 'data'] })

export const PublishRequestCheck = TypeCompiler.Compile(PublishRequestSchema)
