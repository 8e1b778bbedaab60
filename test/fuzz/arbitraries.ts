import fc from 'fast-check'

/**
 * Hostile inputs for the gateway, as fast-check arbitraries (issue 12).
 *
 * An input is plain data that says exactly what goes on the wire: the text
 * and bytes of Engine.IO frames, a polling body, an HTTP request. Credentials
 * are created when the gateway starts, so inputs name them by a marker that
 * the harness replaces just before sending; the inputs of a seed are the same
 * on every run. Deep JSON is built with `repeat`, never by recursion, so the
 * generator itself cannot overflow its stack.
 */

/** Markers the harness replaces with live credentials when it sends an input. */
export const MARK = {
  /** A valid token of the fuzzing key, subject `fuzzer` (what the fuzz connections use). */
  token: '@@TOKEN@@',
  /** A valid token of the same key for another subject: `auth:refresh` with it is refused. */
  otherToken: '@@OTHER_TOKEN@@',
  /** The fuzzing key itself (scopes publish and token:delegate). */
  apiKey: '@@API_KEY@@',
  /** The root admin credential. */
  adminKey: '@@ADMIN_KEY@@'
} as const

/** One WebSocket frame: text, or bytes sent as a binary frame (or as a text frame: invalid UTF-8). */
export type Frame = { text: string } | { bytes: Uint8Array, asText?: boolean }

/** Frames on a websocket that has connected every namespace and joined `lobby`. */
export interface SocketInput { kind: 'socket', tag: string, frames: Frame[] }
/** One Socket.IO CONNECT frame (`40<nsp>,<auth>`) on a websocket connected to no namespace. */
export interface HandshakeInput { kind: 'handshake', tag: string, frame: string }
/** An Engine.IO websocket handshake with a hostile query string and headers. */
export interface TransportInput { kind: 'transport', tag: string, query: string, headers: Record<string, string> }
/** One POST body of an HTTP long-polling session connected to `/chat` (packets separated by \x1e). */
export interface PollingInput { kind: 'polling', tag: string, body: string | Uint8Array, contentType: string | null }
/** One HTTP/1.1 request, written byte for byte (headers may be malformed, bodies invalid UTF-8). */
export interface RestInput {
  kind: 'rest'
  tag: string
  method: string
  path: string
  headers: Array<[string, string]>
  body: string | Uint8Array
  /** How the body is framed; every choice is complete, so the server never waits for bytes that will not come. */
  framing: 'length' | 'chunked' | 'length-and-chunked'
}
export type FuzzInput = SocketInput | HandshakeInput | TransportInput | PollingInput | RestInput

// ---------------------------------------------------------------- JSON, as text

const JSON_LEAVES = ['0', '1', '-1', 'null', 'true', '""', '"x"', '[]', '{}', '1e308', '{"_placeholder":true,"num":0}']

/** `depth` levels of arrays, objects or both around `leaf`, as text. */
export function nestedJson (depth: number, shape: 'array' | 'object' | 'mixed' | 'proto', leaf = '0'): string {
  if (shape === 'mixed') {
    const pairs = Math.floor(depth / 2)
    const odd = depth % 2 === 1
    return '[{"a":'.repeat(pairs) + (odd ? `[${leaf}]` : leaf) + '}]'.repeat(pairs)
  }
  const [open, close] = shape === 'array' ? ['[', ']'] : shape === 'object' ? ['{"a":', '}'] : ['{"__proto__":', '}']
  return open.repeat(depth) + leaf + close.repeat(depth)
}

/** The deep `data` of issue 12: about 6,000 levels, 12 KB, under SOCKET_MAX_PAYLOAD. */
export const DEEP_DATA = nestedJson(6000, 'array')

// Depths around SOCKET_MAX_DEPTH (32), and the ones that overflow a recursive walk.
const depth = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 40 }) },
  { weight: 3, arbitrary: fc.constantFrom(31, 32, 33, 34, 64, 100, 1000, 3000, 6000, 10_000) },
  { weight: 2, arbitrary: fc.integer({ min: 40, max: 12_000 }) }
)

const deepJson = fc.tuple(depth, fc.constantFrom('array' as const, 'object' as const, 'mixed' as const, 'proto' as const), fc.constantFrom(...JSON_LEAVES))
  .map(([d, shape, leaf]) => nestedJson(d, shape, leaf))

const wideJson = fc.tuple(fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 300 }) }, { weight: 1, arbitrary: fc.integer({ min: 300, max: 5000 }) }), fc.constantFrom('array', 'object', 'deepItems'), fc.constantFrom(...JSON_LEAVES))
  .map(([n, shape, leaf]) => {
    if (shape === 'object') return `{${Array.from({ length: n }, (_, i) => `"k${i}":${leaf}`).join(',')}}`
    // Many items each just under or over the depth limit: a walker must check each, and not add them up.
    if (shape === 'deepItems') return `[${Array.from({ length: Math.min(n, 400) }, (_, i) => nestedJson(28 + (i % 8), 'array', leaf)).join(',')}]`
    return `[${Array.from({ length: n }, () => leaf).join(',')}]`
  })

const PROTO_JSON = [
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  '{"__proto__":null}',
  '{"__proto__":[]}',
  '{"__proto__":{"room":"lobby","data":1}}',
  '{"prototype":1,"toString":1,"valueOf":1,"hasOwnProperty":1,"toJSON":1}',
  '[{"__proto__":{"__proto__":{"x":1}}}]',
  '{"toJSON":"x","then":"y","__defineGetter__":1}',
  '{"_placeholder":true,"num":"__proto__"}',
  '{"_placeholder":true,"num":"constructor"}',
  '{"a":1,"a":2,"a":{"__proto__":1}}'
]

const NUMBER_JSON = ['1e400', '-1e400', '123456789012345678901234567890', '-0', '1e-400', '9007199254740993', '0.1e-9999', '1E+2', '-9.999999999999999e307']

const STRING_JSON = ['"\\u0000"', '"\\ud800"', '"\\udc00\\ud800"', '"\\u202e\\u0000"', '"\\/\\b\\f\\n\\r\\t"', '"\\uFEFF"', '"𝌆"', '"\u0085\u2028\u2029"']

const INVALID_JSON = ['', '{', '[', '[1,]', '{"a":}', 'NaN', 'undefined', "'x'", '{"a":1}}', '[]]', '{"a" 1}', '\u0000', '01', '.5', '+1', '"unterminated', '{"\\x":1}', 'tru', '[' + ']'.repeat(2)]

const longString = fc.oneof(fc.integer({ min: 100, max: 2000 }), fc.constantFrom(60_000, 66_000, 70_000))
  .map((n) => JSON.stringify('a'.repeat(n)))

/** A JSON text: mostly valid, sometimes hostile (deep, wide, proto keys, huge numbers), sometimes not JSON at all. */
export const jsonText: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 8, arbitrary: deepJson },
  { weight: 3, arbitrary: wideJson },
  { weight: 3, arbitrary: fc.constantFrom(...PROTO_JSON) },
  { weight: 2, arbitrary: fc.constantFrom(...NUMBER_JSON) },
  { weight: 2, arbitrary: fc.oneof(fc.constantFrom(...STRING_JSON), fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => JSON.stringify(s)), longString) },
  { weight: 1, arbitrary: fc.constantFrom(...INVALID_JSON) }
)

/** A JSON object text of `entries` (values already JSON text). */
export const objectText = (entries: Array<[string, string]>): string => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`

/** Object entries some of which are optional: generates a subset, each value from its own arbitrary. */
function someEntries (fields: Record<string, fc.Arbitrary<string>>, extra = true): fc.Arbitrary<Array<[string, string]>> {
  const present = Object.entries(fields).map(([key, value]) => fc.option(value.map((v): [string, string] => [key, v]), { freq: 3 }))
  const extras = extra ? fc.array(fc.tuple(fc.constantFrom('__proto__', 'constructor', 'prototype', 'extra', 'x'.repeat(300)), jsonText), { maxLength: 2 }) : fc.constant([])
  return fc.tuple(fc.tuple(...present), extras).map(([fieldEntries, extraEntries]) =>
    [...fieldEntries.filter((e): e is [string, string] => e !== null), ...extraEntries])
}

// ---------------------------------------------------------------- names

const ROOMS = ['lobby', 'bystanders', 'room:1', 'room:*', '*', 'user:fuzzer', 'user:alice', 'user:bob', 'key:fuzz', '', ' ', 'fuzz-probe', '__proto__', 'constructor', 'a'.repeat(256), 'a'.repeat(257)]
const roomName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...ROOMS) },
  // A tenant's prefix (SPEC §14) spelled out, and control characters: never a room name.
  { weight: 1, arbitrary: fc.constantFrom('default\u001flobby', 'app-a\u001flobby', 'lobby\u0000', '\u001f', '\u0007room') },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 258, max: 70_000 }).map((n) => 'r'.repeat(n)) }
)
/** A room as JSON text: usually a string, sometimes another type. */
const roomJson = fc.oneof(
  { weight: 8, arbitrary: roomName.map((r) => JSON.stringify(r)) },
  { weight: 1, arbitrary: fc.constantFrom('123', 'null', 'true', '["lobby"]', '{"room":"lobby"}', '{"__proto__":"lobby"}') },
  { weight: 1, arbitrary: deepJson }
)

const HANDLED_EVENTS = ['join', 'leave', 'auth:refresh', 'history', 'presence']
const RESERVED_EVENTS = ['connect', 'connect_error', 'disconnect', 'disconnecting', 'error', 'newListener', 'removeListener', 'shutdown', 'alert', 'gateway:error', 'auth:expired', 'auth:expiring', 'auth:x', 'presence:join', 'presence:leave']
const MESSAGE_EVENTS = ['message', 'typing', 'chat', 'x', '__proto__', 'constructor', 'hasOwnProperty', 'toString', 'emit', 'on', 'prototype', 'then']
const eventName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...MESSAGE_EVENTS) },
  { weight: 4, arbitrary: fc.constantFrom(...HANDLED_EVENTS) },
  { weight: 2, arbitrary: fc.constantFrom(...RESERVED_EVENTS) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constantFrom(127, 128, 129, 1000, 60_000).map((n) => 'e'.repeat(n)) }
)
/** The event name as JSON text: a string, or what socket.io-parser lets through (a number) and what it does not. */
const eventJson = fc.oneof(
  { weight: 12, arbitrary: eventName.map((e) => JSON.stringify(e)) },
  { weight: 1, arbitrary: fc.constantFrom('42', '-1', '1e400', 'null', '{}', '[]', 'true', '["join"]') },
  { weight: 1, arbitrary: deepJson }
)

const tokenJson = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(`"${MARK.token}"`, `"${MARK.otherToken}"`, `"${MARK.apiKey}"`) },
  { weight: 3, arbitrary: fc.constantFrom('"eyJhbGciOiJub25lIn0.eyJzdWIiOiJmdXp6ZXIifQ."', '"a.b.c"', '""', '"Bearer x"', `"${MARK.token}x"`, `"x${MARK.token}"`) },
  { weight: 2, arbitrary: fc.string({ maxLength: 60 }).map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: fc.constantFrom(9000, 70_000).map((n) => JSON.stringify('t'.repeat(n))) },
  { weight: 2, arbitrary: jsonText }
)

/** The envelope of an event, as JSON text: what each handled event takes, near misses of it, and anything. */
const envelopeJson = fc.oneof(
  { weight: 10, arbitrary: fc.tuple(roomJson, jsonText).map(([room, data]) => `{"room":${room},"data":${data}}`) },
  { weight: 4, arbitrary: roomJson.map((room) => `{"room":${room}}`) },
  // join { room, since } (SPEC §12) and history { room, limit }: ids of every shape, limits of every size.
  { weight: 3, arbitrary: fc.tuple(roomJson, fc.oneof(fc.constantFrom('"0-0"', '"1-0"', '"9999999999999999-9999999999999999"', '"99999999999999999-0"', '"-1-0"', '"1-"', '""', '"x"', '1', 'null', `"${'9'.repeat(70)}"`, '"1700000000000-0"'), jsonText)).map(([room, since]) => `{"room":${room},"since":${since}}`) },
  { weight: 2, arbitrary: fc.tuple(roomJson, fc.constantFrom('1', '0', '-1', '100', '101', '1e400', '1.5', '"5"', 'null', '9007199254740993')).map(([room, limit]) => `{"room":${room},"limit":${limit}}`) },
  { weight: 3, arbitrary: tokenJson.map((token) => `{"token":${token}}`) },
  { weight: 3, arbitrary: fc.tuple(roomJson, jsonText, fc.constantFrom('__proto__', 'constructor', 'extra', 'since', 'token')).map(([room, data, key]) => `{"room":${room},"data":${data},${JSON.stringify(key)}:${data}}`) },
  { weight: 2, arbitrary: fc.tuple(jsonText, jsonText).map(([room, data]) => `{"__proto__":{"room":"lobby"},"room":${room},"data":${data}}`) },
  { weight: 4, arbitrary: jsonText }
)

// Ack ids: none, ordinary, huge, and the odd digits socket.io-parser accepts (`Number(' ') == ' '`).
const ackId = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  { weight: 4, arbitrary: fc.nat({ max: 1_000_000 }).map(String) },
  { weight: 2, arbitrary: fc.constantFrom('0', '4294967296', '9007199254740993', '99999999999999999999999999', '9'.repeat(400), ' 1', '1 2', '00') }
)

const NAMESPACES = ['/chat', '/notification', '/system', '/error']
const OTHER_NAMESPACES = ['/', '/nope', '/chat/', '/CHAT', '/chat?x=1', '/admin', '//chat', '/../chat', '/' + 'n'.repeat(300), '/chat\u0000', '/__proto__', '/constructor']
const namespace = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...NAMESPACES) },
  { weight: 2, arbitrary: fc.constantFrom(...OTHER_NAMESPACES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }).map((s) => `/${s.replace(/,/g, '')}`) }
)
// Events go mostly where the connection is: an event for a namespace it is not in only closes it.
const eventNamespace = fc.oneof(
  { weight: 40, arbitrary: fc.constant('/chat') },
  { weight: 20, arbitrary: fc.constantFrom(...NAMESPACES) },
  { weight: 1, arbitrary: namespace }
)

// ---------------------------------------------------------------- Socket.IO packets

/** The args of an EVENT packet as JSON text: `[event, envelope]` mostly, with missing, extra and many arguments. */
const eventArgs = fc.oneof(
  { weight: 12, arbitrary: fc.tuple(eventJson, envelopeJson).map(([e, env]) => `[${e},${env}]`) },
  { weight: 1, arbitrary: eventJson.map((e) => `[${e}]`) },
  { weight: 1, arbitrary: fc.tuple(eventJson, envelopeJson, envelopeJson).map(([e, a, b]) => `[${e},${a},${b}]`) },
  { weight: 1, arbitrary: fc.tuple(eventJson, fc.integer({ min: 2, max: 5000 })).map(([e, n]) => `[${e}${',{"room":"lobby","data":0}'.repeat(n)}]`) },
  { weight: 1, arbitrary: jsonText }
)

/** `42<nsp>,<id>[...]`: an EVENT, the packet every message and command arrives in. */
const eventPacket = fc.tuple(eventNamespace, ackId, eventArgs).map(([nsp, id, args]) => `42${nsp},${id}${args}`)

/**
 * Data the gateway accepts and relays (at most SOCKET_MAX_DEPTH = 32 deep,
 * under SOCKET_MAX_PAYLOAD) that is hostile all the same: the relay, the
 * encoder and the adapter see it, not only the validation.
 */
export const legalData: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 4, arbitrary: fc.tuple(fc.integer({ min: 1, max: 32 }), fc.constantFrom('array' as const, 'object' as const, 'mixed' as const, 'proto' as const), fc.constantFrom(...JSON_LEAVES)).map(([d, shape, leaf]) => nestedJson(d, shape, leaf)) },
  { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 1, max: 3000 }), fc.constantFrom(...JSON_LEAVES)).map(([n, leaf]) => `[${Array.from({ length: n }, () => leaf).join(',')}]`) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 1500 }).map((n) => `{${Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',')}}`) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }).map((n) => `[${Array.from({ length: n }, (_, i) => nestedJson(1 + (i % 31), 'array')).join(',')}]`) },
  { weight: 2, arbitrary: fc.constantFrom(...PROTO_JSON, ...NUMBER_JSON, ...STRING_JSON) },
  { weight: 1, arbitrary: fc.oneof(fc.integer({ min: 1000, max: 60_000 }), fc.constant(65_000)).map((n) => JSON.stringify('\u00e9'.repeat(Math.floor(n / 2)))) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }).map((t) => JSON.stringify(t)) }
)
const legalRoom = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('lobby', 'bystanders', 'room:1', 'fuzz-probe', 'r'.repeat(256), '__proto__', 'constructor', 'room:\u0000', 'hasOwnProperty') },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }).filter((r) => !r.startsWith('user:') && !r.startsWith('key:')) }
)
const legalEvent = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('message', 'typing', '__proto__', 'constructor', 'toString', 'then', 'e'.repeat(128), 'join ', 'Join', 'auth', 'gateway') },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }) }
)
/** A relay the gateway should pass: `42<nsp>,<id>["<event>",{"room":…,"data":…}]` with legal but hostile parts. */
const relayPacket = fc.tuple(eventNamespace, ackId, legalEvent, legalRoom, legalData)
  .map(([nsp, id, event, room, data]) => `42${nsp},${id}[${JSON.stringify(event)},{"room":${JSON.stringify(room)},"data":${data}}]`)

// A placeholder for attachment `num`, with the nums socket.io-parser must refuse.
const placeholder = fc.oneof(
  { weight: 4, arbitrary: fc.nat({ max: 3 }).map((n) => `{"_placeholder":true,"num":${n}}`) },
  { weight: 1, arbitrary: fc.constantFrom('-1', '1.5', '"0"', '1e400', '99', 'null', '"__proto__"', '"length"', '"constructor"').map((n) => `{"_placeholder":true,"num":${n}}`) },
  { weight: 1, arbitrary: fc.constantFrom('{"_placeholder":"true","num":0}', '{"_placeholder":true}', '{"_placeholder":1,"num":0}') }
)
const attachmentCount = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 3 }).map(String) },
  { weight: 1, arbitrary: fc.constantFrom('0', '10', '11', '-1', '1.5', 'a', '', '99999999999999999999', '1e1', ' 1') }
)
const binaryBytes = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 300_000 }).map((n) => new Uint8Array(n).fill(0x42)) }
)

/**
 * `45N-<nsp>,<id>[...]` then N binary frames: a BINARY_EVENT (SPEC §7 refuses
 * attachments). Placeholders sit where data goes, where the event name goes,
 * deep inside the data; the frames sent may be fewer or more than announced.
 */
const binaryEventFrames: fc.Arbitrary<Frame[]> = fc.tuple(
  fc.constantFrom('45', '46'),
  attachmentCount,
  namespace,
  ackId,
  fc.oneof(
    { weight: 5, arbitrary: fc.tuple(eventJson, roomJson, placeholder).map(([e, room, p]) => `[${e},{"room":${room},"data":${p}}]`) },
    { weight: 1, arbitrary: placeholder.map((p) => `[${p},{"room":"lobby","data":1}]`) },
    { weight: 1, arbitrary: fc.tuple(depth, placeholder).map(([d, p]) => `["message",{"room":"lobby","data":${nestedJson(d, 'array', p)}}]`) },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 2, max: 2000 }), placeholder).map(([n, p]) => `["message",{"room":"lobby","data":[${Array.from({ length: n }, () => p).join(',')}]}]`) },
    { weight: 1, arbitrary: jsonText }
  ),
  fc.array(binaryBytes, { maxLength: 4 })
).map(([type, count, nsp, id, args, attachments]) => [
  { text: `${type}${count}-${nsp},${id}${args}` },
  ...attachments.map((bytes) => ({ bytes }))
])

/** Every other Socket.IO packet type, and packets the parser must refuse. */
const otherPacket = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(namespace, fc.option(jsonText, { nil: undefined })).map(([nsp, auth]) => `40${nsp},${auth ?? ''}`) },
  { weight: 2, arbitrary: namespace.map((nsp) => `41${nsp},`) },
  { weight: 2, arbitrary: fc.tuple(namespace, ackId, jsonText).map(([nsp, id, data]) => `43${nsp},${id}${data}`) },
  { weight: 1, arbitrary: fc.tuple(namespace, jsonText).map(([nsp, data]) => `44${nsp},${data}`) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('47', '48', '49', '4a', '4-', '4 ', '4\u0000', '4'), fc.string({ maxLength: 30 })).map(([p, s]) => p + s) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('/chat', '/chat,', '/chat,,', '/chat["x"]', '', ','), jsonText).map(([head, data]) => `42${head}${data}`) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }).map((s) => `4${s}`) }
)

/** Engine.IO packets other than `message`: a client ping (refused by EIO 4), close, upgrade, noop, junk types. */
const enginePacket = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('', '0', '0{}', '1', '2', '2probe', '3', '3probe', '5', '6', '6x', '7', '8', '9', 'x', 'b', 'bAAAA') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) }
)

/** Bytes that are not UTF-8, sent in a text frame. */
const invalidUtf8 = fc.oneof(
  fc.constantFrom([0x34, 0x32, 0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x34, 0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]).map((b) => new Uint8Array(b)),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => { const out = new Uint8Array(b.length + 1); out.set(b); out[b.length] = 0xff; return out })
)

// Weighted towards packets the gateway reads itself: an input the parser refuses closes the connection,
// and each new connection costs a handshake, a token check and an audit row, several times a packet's cost.
const socketInput: fc.Arbitrary<SocketInput> = fc.oneof(
  { weight: 15, arbitrary: relayPacket.map((text): SocketInput => ({ kind: 'socket', tag: 'socket/relay', frames: [{ text }] })) },
  { weight: 30, arbitrary: eventPacket.map((text): SocketInput => ({ kind: 'socket', tag: 'socket/event', frames: [{ text }] })) },
  { weight: 3, arbitrary: binaryEventFrames.map((frames): SocketInput => ({ kind: 'socket', tag: 'socket/binary-event', frames })) },
  { weight: 4, arbitrary: otherPacket.map((text): SocketInput => ({ kind: 'socket', tag: 'socket/packet', frames: [{ text }] })) },
  { weight: 1, arbitrary: enginePacket.map((text): SocketInput => ({ kind: 'socket', tag: 'socket/engine', frames: [{ text }] })) },
  { weight: 1, arbitrary: binaryBytes.map((bytes): SocketInput => ({ kind: 'socket', tag: 'socket/stray-binary', frames: [{ bytes }] })) },
  { weight: 1, arbitrary: invalidUtf8.map((bytes): SocketInput => ({ kind: 'socket', tag: 'socket/invalid-utf8', frames: [{ bytes, asText: true }] })) },
  { weight: 2, arbitrary: fc.array(fc.oneof({ weight: 3, arbitrary: eventPacket }, { weight: 1, arbitrary: otherPacket }), { minLength: 2, maxLength: 5 }).map((texts): SocketInput => ({ kind: 'socket', tag: 'socket/burst', frames: texts.map((text) => ({ text })) })) }
)

/** A frame about the size of Engine.IO's ceiling (1 MB): rare, as each costs a megabyte to build and to send. */
const oversizedInput = fc.integer({ min: 900_000, max: 1_100_000 })
  .map((n): SocketInput => ({ kind: 'socket', tag: 'socket/oversized', frames: [{ text: `42/chat,["message",{"room":"lobby","data":"${'a'.repeat(n)}"}]` }] }))

// ---------------------------------------------------------------- handshakes

/** The CONNECT packet's auth payload: missing, garbage, non-string and deep tokens, proto keys. */
const authJson = fc.oneof(
  { weight: 2, arbitrary: legalData.map((extra) => `{"token":"${MARK.token}","x":${extra}}`) },
  { weight: 3, arbitrary: tokenJson.map((token) => `{"token":${token}}`) },
  { weight: 2, arbitrary: jsonText },
  { weight: 1, arbitrary: fc.constantFrom('', '{}', 'null', '[]', '"token"', '1', `{"__proto__":{"token":"${MARK.token}"}}`, `{"token":"${MARK.token}","__proto__":{"admin":true}}`, `{"constructor":{"prototype":{"token":"${MARK.token}"}}}`, `{"token":["${MARK.token}"]}`) },
  { weight: 1, arbitrary: depth.map((d) => `{"token":${nestedJson(d, 'object', `"${MARK.token}"`)}}`) },
  { weight: 1, arbitrary: depth.map((d) => `{"token":"${MARK.token}","x":${nestedJson(d, 'array')}}`) }
)

const handshakeInput: fc.Arbitrary<HandshakeInput> = fc.tuple(namespace, authJson, fc.oneof({ weight: 8, arbitrary: fc.constant(',') }, { weight: 1, arbitrary: fc.constantFrom('', ',,') }))
  .map(([nsp, auth, comma]) => ({ kind: 'handshake', tag: 'handshake/connect', frame: `40${nsp}${comma}${auth}` }))

const headerValue = fc.oneof(
  fc.string({ unit: 'grapheme-ascii', maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, '')),
  fc.constantFrom(8000, 20_000).map((n) => 'v'.repeat(n)),
  fc.string({ unit: 'binary', maxLength: 30 }).map((s) => [...s].map((c) => String.fromCharCode(0x20 + (c.charCodeAt(0) % 0xdf))).join('').replace(/\x7f/g, ''))
)

const transportInput: fc.Arbitrary<TransportInput> = fc.tuple(
  fc.constantFrom('EIO=4', 'EIO=3', 'EIO=5', 'EIO=', 'EIO=4&EIO=3', '', 'EIO=%ff', 'EIO=4abc'),
  fc.constantFrom('transport=websocket', 'transport=polling', 'transport=', 'transport=webtransport', 'transport=__proto__', ''),
  fc.constantFrom('', '&sid=', '&sid=nonexistent', '&sid=' + 's'.repeat(500), '&b64=1', '&t=x', '&' + 'q=1&'.repeat(500)),
  fc.dictionary(fc.constantFrom('origin', 'user-agent', 'authorization', 'x-forwarded-for', 'cookie', 'sec-websocket-protocol', 'x-api-key', 'accept-language'), headerValue, { maxKeys: 3 })
).map(([eio, transport, extra, headers]) => ({ kind: 'transport', tag: 'transport/handshake', query: [eio, transport].filter((p) => p !== '').join('&') + extra, headers }))

// ---------------------------------------------------------------- polling

const pollingPacket = fc.oneof(
  { weight: 6, arbitrary: eventPacket },
  { weight: 2, arbitrary: otherPacket },
  { weight: 1, arbitrary: binaryEventFrames.map((frames) => frames.map((f) => 'text' in f ? f.text : `b${Buffer.from(f.bytes).toString('base64')}`).join('\x1e')) },
  { weight: 1, arbitrary: enginePacket },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }).map((s) => `b${s}`) }
)

const pollingInput: fc.Arbitrary<PollingInput> = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.oneof({ weight: 4, arbitrary: fc.array(pollingPacket, { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: fc.array(pollingPacket, { minLength: 4, maxLength: 12 }) }), fc.constantFrom('\x1e', '\x1e\x1e', '\n')).map(([packets, sep]): PollingInput => ({ kind: 'polling', tag: 'polling/packets', body: packets.join(sep), contentType: 'text/plain;charset=UTF-8' })) },
  { weight: 1, arbitrary: fc.tuple(invalidUtf8, fc.constantFrom('text/plain;charset=UTF-8', 'application/octet-stream', null)).map(([bytes, contentType]): PollingInput => ({ kind: 'polling', tag: 'polling/bytes', body: bytes, contentType })) },
  { weight: 1, arbitrary: fc.tuple(eventPacket, fc.constantFrom('application/octet-stream', 'application/json', null, 'text/plain;charset=latin1')).map(([p, contentType]): PollingInput => ({ kind: 'polling', tag: 'polling/content-type', body: `4${p}`, contentType })) }
)

// ---------------------------------------------------------------- REST

const anyValue = jsonText
const stringish = fc.oneof(fc.string({ maxLength: 40 }).map((s) => JSON.stringify(s)), anyValue)

const tokenBody = someEntries({
  apiKey: fc.oneof(fc.constantFrom(`"${MARK.apiKey}"`, `"${MARK.adminKey}"`, '"spk_x_y"', '"spk__"', `"${MARK.apiKey}x"`), stringish),
  ttl: fc.oneof(fc.constantFrom('1', '0', '-1', '900', '901', '1e400', '1.5', '"60"', 'null', '9007199254740993'), anyValue),
  namespaces: fc.oneof(fc.constantFrom('["/chat"]', '[]', '"/chat"', '["/nope"]', '["/chat","/chat"]', `[${Array.from({ length: 5000 }, () => '"/chat"').join(',')}]`), anyValue),
  sub: fc.oneof(fc.constantFrom('"alice"', '""', '"user:x"', '"a${sub}"', `"${'s'.repeat(300)}"`, '"__proto__"'), stringish)
})

const publishBody = someEntries({
  namespace: fc.oneof(namespace.map((n) => JSON.stringify(n)), anyValue),
  room: roomJson,
  event: eventJson,
  data: anyValue,
  tenant: fc.oneof(fc.constantFrom('"default"', '"app-a"', '"APP"', '""', '"a\u001fb"', `"${'t'.repeat(65)}"`, '"__proto__"'), anyValue)
})

const keyBody = someEntries({
  name: stringish,
  scopes: fc.oneof(fc.constantFrom('["publish"]', '["admin"]', '"admin"', '[]', '["x"]', '["admin","admin"]', '[null]'), anyValue),
  policyId: stringish,
  allowedIps: fc.oneof(fc.constantFrom('["10.0.0.0/8"]', '["::1/129"]', '["999.1.1.1"]', '"10.0.0.1"', '[]', `[${Array.from({ length: 3000 }, (_, i) => `"10.0.${i % 256}.0/24"`).join(',')}]`), anyValue),
  rateLimit: fc.oneof(fc.constantFrom('{"max":1,"windowSeconds":1}', '{"max":-1,"windowSeconds":0}', '{"max":1e400,"windowSeconds":1}', '{"max":"1"}', 'null'), anyValue),
  maxConnections: fc.oneof(fc.constantFrom('1', '0', '-1', '1e400', 'null', '"1"'), anyValue),
  expiresAt: fc.oneof(fc.constantFrom('"2000-01-01T00:00:00Z"', '"9999-12-31T23:59:59Z"', '"not a date"', '"+275760-09-13T00:00:00.001Z"', '0', 'null'), anyValue),
  tenant: fc.oneof(fc.constantFrom('"default"', '"app-a"', '"App"', '""', '"a_b"', `"${'t'.repeat(65)}"`, '"__proto__"'), anyValue)
})

// Routes (SPEC §10) whose upstreams lead nowhere (a closed port, an unparsable URL): what the fuzzer's events
// then meet is the refusal path, without the run waiting on a backend.
const routeBody = someEntries({
  name: fc.oneof(fc.constantFrom('"fuzz-route"', '"a b"', '""', `"${'n'.repeat(80)}"`, '"__proto__"'), stringish),
  namespace: fc.oneof(namespace.map((n) => JSON.stringify(n)), anyValue),
  events: fc.oneof(fc.constantFrom('["order:*"]', '["*"]', '["$join","$connect"]', '["$disconnect"]', '["$boot"]', '["a*b"]', '[]', `[${Array.from({ length: 200 }, (_, i) => `"e${i}"`).join(',')}]`), anyValue),
  upstream: fc.oneof(fc.constantFrom(
    '{"type":"http","url":"http://127.0.0.1:9/spark"}', '{"type":"socketio","url":"http://127.0.0.1:9","namespace":"/spark"}',
    '{"type":"http","url":"http://user:pw@127.0.0.1:9/"}', '{"type":"http","url":"http://[::1"}', '{"type":"http","url":"file:///etc/passwd"}',
    '{"type":"grpc","url":"http://127.0.0.1:9"}', '{"type":"socketio","url":"http://127.0.0.1:9"}'), anyValue),
  mode: fc.oneof(fc.constantFrom('"request"', '"notify"', '"both"'), anyValue),
  timeoutMs: fc.oneof(fc.constantFrom('1', '0', '60000', '60001', '1.5', '"100"', '1e400'), anyValue),
  maxInFlight: fc.oneof(fc.constantFrom('1', '0', '10000', '10001', '-1'), anyValue),
  relay: fc.oneof(fc.constantFrom('true', 'false', '"true"', 'null'), anyValue)
})

const ruleText = someEntries({
  effect: fc.oneof(fc.constantFrom('"allow"', '"deny"', '"maybe"'), anyValue),
  namespace: fc.oneof(fc.constantFrom('"/chat"', '"*"', '"/nope"', '""'), anyValue),
  actions: fc.oneof(fc.constantFrom('["connect","subscribe","publish"]', '["publish"]', '[]', '["x"]', '"publish"'), anyValue),
  events: fc.oneof(fc.constantFrom('["message"]', '["*"]', '[]', `["${'e'.repeat(200)}"]`), anyValue),
  rooms: fc.oneof(fc.constantFrom('["room:*"]', '["*"]', '["user:${sub}"]', '["${keyId}*"]', '["**"]', '["*a*"]', `["${'r'.repeat(300)}*"]`), anyValue)
}).map(objectText)

const policyBody = someEntries({
  name: stringish,
  rules: fc.oneof(
    fc.array(ruleText, { maxLength: 4 }).map((rules) => `[${rules.join(',')}]`),
    // Many plain rules (a hostile rule repeated thousands of times would only be a body over BODY_LIMIT).
    fc.integer({ min: 100, max: 3000 }).map((n) => `[${Array.from({ length: n }, (_, i) => `{"effect":"allow","namespace":"*","actions":["publish"],"rooms":["r${i}*"]}`).join(',')}]`),
    anyValue)
})

/** A body as it goes on the wire: JSON text, raw bytes that are not UTF-8, or a BOM, and sometimes over BODY_LIMIT. */
const rawBody = (json: fc.Arbitrary<string>): fc.Arbitrary<string | Uint8Array> => fc.oneof(
  { weight: 12, arbitrary: json },
  { weight: 1, arbitrary: json.map((text) => `\uFEFF${text}`) },
  { weight: 1, arbitrary: fc.tuple(json, invalidUtf8).map(([text, bad]) => { const head = Buffer.from(`{"x":"${text.slice(0, 20).replace(/["\\]/g, '')}`); return new Uint8Array(Buffer.concat([head, bad, Buffer.from('"}')])) }) },
  { weight: 1, arbitrary: fc.constantFrom(65_536, 65_537, 200_000).map((n) => `{"name":"${'n'.repeat(n)}"}`) }
)

const CONTENT_TYPES = ['application/json', 'application/json', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/json;charset=latin1', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/vnd.api+json', 'application/json, text/plain', '']
const credentialHeader = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<Array<[string, string]>>([['x-api-key', MARK.adminKey]], [['x-api-key', MARK.apiKey]], [['authorization', `Bearer ${MARK.token}`]]) },
  { weight: 2, arbitrary: fc.constantFrom<Array<[string, string]>>([], [['x-api-key', 'spk_x_y']], [['authorization', 'Bearer a.b.c']], [['authorization', 'Basic x']], [['x-api-key', MARK.adminKey], ['authorization', 'Bearer x']], [['x-api-key', MARK.apiKey], ['x-api-key', MARK.adminKey]]) },
  { weight: 1, arbitrary: headerValue.map((v): Array<[string, string]> => [['x-api-key', v]]) },
  { weight: 1, arbitrary: headerValue.map((v): Array<[string, string]> => [['authorization', `Bearer ${v}`]]) }
)
// Headers that are hostile in themselves: huge, many, repeated, with bytes HTTP forbids (the server answers 400 and closes).
const extraHeaders = fc.oneof(
  { weight: 8, arbitrary: fc.constant<Array<[string, string]>>([]) },
  { weight: 2, arbitrary: fc.array(fc.tuple(fc.constantFrom('x-forwarded-for', 'origin', 'user-agent', 'accept', 'x-request-id', 'content-encoding', 'accept-encoding', 'cookie', 'expect', 'forwarded'), headerValue), { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.integer({ min: 50, max: 300 }).map((n): Array<[string, string]> => Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'])) },
  { weight: 1, arbitrary: fc.constantFrom<Array<[string, string]>>([['bad header', 'x']], [['x-nul', 'a\u0000b']], [['', 'x']], [['x-cr', 'a\rb']], [['content-length', '5']], [['host', '']], [['transfer-encoding', 'gzip']]) }
)

// Requests the gateway should accept, with hostile parts inside: the publish and token paths past validation.
const legalPublish = fc.tuple(fc.constantFrom('/chat', '/chat', '/notification', '/system', '/error'), legalRoom, legalEvent, legalData)
  .map(([namespace, room, event, data]) => `{"namespace":"${namespace}","room":${JSON.stringify(room)},"event":${JSON.stringify(event)},"data":${data}}`)
const legalToken = someEntries({
  sub: fc.oneof(fc.constantFrom('"alice"', '"__proto__"', '"constructor"', `"${'s'.repeat(200)}"`, '"user:x"', '"a,b"'), fc.string({ minLength: 1, maxLength: 40 }).map((t) => JSON.stringify(t))),
  ttl: fc.integer({ min: 1, max: 86_400 }).map(String),
  namespaces: fc.subarray(['/chat', '/notification', '/system', '/error'], { minLength: 1 }).map((n) => JSON.stringify(n))
}, false).map(objectText)

interface Route { tag: string, method: string, path: string, body: string | Uint8Array, legal?: boolean }

const restRoute: fc.Arbitrary<Route> = fc.oneof(
  { weight: 4, arbitrary: legalPublish.map((body) => ({ tag: 'rest/publish-legal', method: 'POST', path: '/v1/publish', body, legal: true })) },
  { weight: 2, arbitrary: legalToken.map((body) => ({ tag: 'rest/auth-token-legal', method: 'POST', path: '/auth/token', body, legal: true })) },
  { weight: 4, arbitrary: rawBody(tokenBody.map(objectText)).map((body) => ({ tag: 'rest/auth-token', method: 'POST', path: '/auth/token', body })) },
  { weight: 5, arbitrary: rawBody(publishBody.map(objectText)).map((body) => ({ tag: 'rest/publish', method: 'POST', path: '/v1/publish', body })) },
  { weight: 2, arbitrary: rawBody(keyBody.map(objectText)).map((body) => ({ tag: 'rest/keys', method: 'POST', path: '/v1/keys', body })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('x', 'fuzz-unknown', '%ff', '..%2f..', 'a'.repeat(250), '%00', '__proto__'), rawBody(keyBody.map(objectText))).map(([id, body]) => ({ tag: 'rest/keys-patch', method: 'PATCH', path: `/v1/keys/${id}`, body })) },
  { weight: 2, arbitrary: rawBody(policyBody.map(objectText)).map((body) => ({ tag: 'rest/policies', method: 'POST', path: '/v1/policies', body })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('x', '00000000-0000-0000-0000-000000000000', '%ff', '__proto__'), rawBody(policyBody.map(objectText))).map(([id, body]) => ({ tag: 'rest/policies-put', method: 'PUT', path: `/v1/policies/${id}`, body })) },
  { weight: 2, arbitrary: rawBody(routeBody.map(objectText)).map((body) => ({ tag: 'rest/routes', method: 'POST', path: '/v1/routes', body })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('x', '00000000-0000-0000-0000-000000000000', '%ff', '__proto__'), fc.constantFrom('', '/rotate'), rawBody(routeBody.map(objectText))).map(([id, action, body]) => ({ tag: 'rest/routes-put', method: action === '' ? 'PUT' : 'POST', path: `/v1/routes/${id}${action}`, body })) },
  { weight: 1, arbitrary: fc.constantFrom('?namespace=/chat&room=lobby', '?namespace=/chat&room=lobby&tenant=app-a', '?namespace=/chat', '?room=lobby', '?namespace=/nope&room=x', '?namespace=/chat&room=%1F', '?namespace=/chat&room=lobby&tenant=BAD', '?namespace=/chat&room=' + 'r'.repeat(300), '?namespace=/notification&room=lobby', '?namespace=/chat&room=lobby&room=x').map((query) => ({ tag: 'rest/presence', method: 'GET', path: '/v1/presence' + query, body: '' })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('/v1/keys', '/v1/audit', '/v1/policies', '/v1/routes', '/v1/keys/x/usage'), fc.constantFrom('?tenant=app-a', '?tenant=BAD', '?limit=0', '?limit=101', '?limit=1e3', '?cursor=' + 'c'.repeat(600), '?cursor=%ff%fe', '?limit=5&limit=6', '?since=not-a-date', '?outcome=__proto__', '?ip=::1', '?__proto__[x]=1', '')).map(([path, query]) => ({ tag: 'rest/list', method: 'GET', path: path + query, body: '' })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('GET', 'PROPFIND', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT', 'G\u00e9T'), fc.constantFrom('/', '/health/live', '/docs/json', '/metrics', '/v1/%', '/%00', '/socket.io/', '/v1/keys/' + 'k'.repeat(2000), '//v1//keys', '/.well-known/jwks.json')).map(([method, path]) => ({ tag: 'rest/other', method, path, body: '' })) }
)

// The fuzzing key has scopes publish and token:delegate: a legal request is made with it, or a token of it.
const legalCredential = fc.constantFrom<Array<[string, string]>>([['x-api-key', MARK.apiKey]], [['authorization', `Bearer ${MARK.token}`]])

const restInput: fc.Arbitrary<RestInput> = fc.tuple(restRoute, credentialHeader, legalCredential, fc.constantFrom(...CONTENT_TYPES), extraHeaders, fc.constantFrom('length', 'length', 'length', 'chunked', 'length-and-chunked') as fc.Arbitrary<RestInput['framing']>)
  .map(([route, credentials, legal, contentType, extra, framing]): RestInput => route.legal === true
    ? { kind: 'rest', tag: route.tag, method: route.method, path: route.path, headers: [...legal, ['content-type', 'application/json']], body: route.body, framing: 'length' }
    : {
        kind: 'rest',
        tag: route.tag,
        method: route.method,
        path: route.path,
        headers: [...credentials, ...(contentType === '' ? [] : [['content-type', contentType] as [string, string]]), ...extra],
        body: route.body,
        framing
      })

// ---------------------------------------------------------------- all together

/** One hostile input of any kind, weighted towards the per-packet path where most code runs. */
export const fuzzInput: fc.Arbitrary<FuzzInput> = fc.oneof(
  { weight: 600, arbitrary: socketInput },
  { weight: 1, arbitrary: oversizedInput },
  { weight: 100, arbitrary: handshakeInput },
  { weight: 30, arbitrary: transportInput },
  { weight: 60, arbitrary: pollingInput },
  { weight: 220, arbitrary: restInput }
)

/** A batch of inputs sent side by side; the harness checks the gateway after each batch. */
export const fuzzBatch = (maxLength: number): fc.Arbitrary<FuzzInput[]> => fc.array(fuzzInput, { minLength: 1, maxLength, size: 'max' })

const relayAt = (nsp: string, data: string): SocketInput => ({ kind: 'socket', tag: 'socket/event', frames: [{ text: `42${nsp},7["message",{"room":"lobby","data":${data}}]` }] })
const publish = (data: string): RestInput => ({
  kind: 'rest',
  tag: 'rest/publish',
  method: 'POST',
  path: '/v1/publish',
  headers: [['x-api-key', MARK.apiKey], ['content-type', 'application/json']],
  body: `{"namespace":"/chat","room":"lobby","event":"message","data":${data}}`,
  framing: 'length'
})

/**
 * Inputs every run sends first, whatever its seed: the packets of issue 12
 * that stopped the process or answered 500, so a gateway that would still
 * crash on them fails the run for certain.
 */
export const MUST_SEND: FuzzInput[] = [
  relayAt('/chat', DEEP_DATA),
  relayAt('/notification', nestedJson(6000, 'object')),
  { kind: 'socket', tag: 'socket/event', frames: [{ text: `42/chat,8["message",{"room":"bystanders","data":${nestedJson(6000, 'mixed')}}]` }] },
  { kind: 'socket', tag: 'socket/event', frames: [{ text: `42/chat,9["join",{"room":${nestedJson(6000, 'array', '"lobby"')}}]` }] },
  { kind: 'socket', tag: 'socket/event', frames: [{ text: `42/chat,10["auth:refresh",{"token":${nestedJson(6000, 'array', `"${MARK.token}"`)}}]` }] },
  { kind: 'socket', tag: 'socket/event', frames: [{ text: `42/chat,11[${nestedJson(6000, 'array', '"message"')},{"room":"lobby","data":1}]` }] },
  { kind: 'socket', tag: 'socket/binary-event', frames: [{ text: `451-/chat,12["message",{"room":"lobby","data":${nestedJson(5000, 'array', '{"_placeholder":true,"num":0}')}}]` }, { bytes: new Uint8Array([1, 2, 3]) }] },
  { kind: 'socket', tag: 'socket/binary-event', frames: [{ text: '451-/chat,13["message",{"room":"lobby","data":{"_placeholder":true,"num":0}}]' }, { bytes: new Uint8Array([1, 2, 3]) }] },
  { kind: 'socket', tag: 'socket/event', frames: [{ text: `42/chat,14["${'e'.repeat(129)}",{"room":"lobby","data":1}]` }] },
  { kind: 'socket', tag: 'socket/event', frames: [{ text: '42/chat,15["message",{"room":"lobby","data":{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}}]' }] },
  { kind: 'handshake', tag: 'handshake/connect', frame: `40/chat,{"token":"${MARK.token}","x":${nestedJson(6000, 'array')}}` },
  { kind: 'handshake', tag: 'handshake/connect', frame: `40/chat,${nestedJson(6000, 'object', `"${MARK.token}"`)}` },
  { kind: 'polling', tag: 'polling/packets', body: `42/chat,16["message",{"room":"lobby","data":${DEEP_DATA}}]`, contentType: 'text/plain;charset=UTF-8' },
  publish(DEEP_DATA),
  publish(nestedJson(6000, 'object')),
  { kind: 'rest', tag: 'rest/auth-token', method: 'POST', path: '/auth/token', headers: [['x-api-key', MARK.apiKey], ['content-type', 'application/json']], body: `{"sub":"alice","namespaces":${nestedJson(6000, 'array', '"/chat"')}}`, framing: 'length' },
  { kind: 'rest', tag: 'rest/policies', method: 'POST', path: '/v1/policies', headers: [['x-api-key', MARK.adminKey], ['content-type', 'application/json']], body: `{"name":"deep","rules":${nestedJson(6000, 'array')}}`, framing: 'length' }
]
