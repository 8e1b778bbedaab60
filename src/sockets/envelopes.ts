import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { ROOM_NAME_PATTERN } from '../protocol/rooms.js'

const Room = Type.String({ minLength: 1, maxLength: 256, pattern: ROOM_NAME_PATTERN })

/** Packet envelopes (SPEC §5), compiled once: checks are a plain function call per packet. */
export const MessageEnvelope = TypeCompiler.Compile(Type.Object({ room: Room, data: Type.Unknown() }, { additionalProperties: false, required: ['room', 'data'] }))
export const RoomEnvelope = TypeCompiler.Compile(Type.Object({ room: Room }, { additionalProperties: false }))
/** `join`: `since` is the id of the last message the client saw (SPEC §12). */
export const JoinEnvelope = TypeCompiler.Compile(Type.Object({ room: Room, since: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) }, { additionalProperties: false }))
export const HistoryEnvelope = TypeCompiler.Compile(Type.Object({ room: Room, limit: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false }))
export const RefreshEnvelope = TypeCompiler.Compile(Type.Object({ token: Type.String({ minLength: 1, maxLength: 8192 }) }, { additionalProperties: false }))

export interface MessagePayload { room: string, data: unknown }
export interface RoomPayload { room: string }
export interface JoinPayload { room: string, since?: string }
export interface HistoryPayload { room: string, limit?: number }
export interface RefreshPayload { token: string }
