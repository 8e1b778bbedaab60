// Message ids of rooms with history (SPEC §12): `<ms>-<seq>`, the shape of a Redis stream id, so the
// in-process store and Redis order them alike; the SDK orders them too. No imports.

const STREAM_ID = /^([0-9]{1,16})-([0-9]{1,16})$/

/** The id's two parts, or undefined when it is not an id of a room with history. */
export function parseStreamId (id: string): [number, number] | undefined {
  const match = STREAM_ID.exec(id)
  if (match === null) return undefined
  const parts: [number, number] = [Number(match[1]), Number(match[2])]
  return Number.isSafeInteger(parts[0]) && Number.isSafeInteger(parts[1]) ? parts : undefined
}

/** Negative, zero or positive as `a` comes before, with or after `b`. */
export function compareStreamIds (a: [number, number], b: [number, number]): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1]
}

export const formatStreamId = ([ms, seq]: [number, number]): string => `${ms}-${seq}`
