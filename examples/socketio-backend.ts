// A Socket.IO backend behind a Spark Gateway route (README, "Routing to your backend"): the gateway connects
// to namespace /spark and emits each event as `spark:event` with an ack.
//   SPARK_ROUTE_SECRET=whsec_… [PORT=4001] npx tsx examples/socketio-backend.ts
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { Server, type Socket } from 'socket.io'

/** What the gateway emits for a routed event (SPEC §10). */
interface SparkEvent {
  id: string
  type: 'event' | 'connect' | 'join' | 'disconnect' | 'leave'
  namespace: string
  room: string | null
  event: string
  data: unknown
  principal: { sub: string, keyId: string, scopes: string[], ns: string[] | null }
}

const secret = process.env.SPARK_ROUTE_SECRET ?? ''
if (!secret.startsWith('whsec_')) throw new Error('SPARK_ROUTE_SECRET must be the whsec_… secret POST /v1/routes answered with')
const key = Buffer.from(secret.slice('whsec_'.length), 'base64')
const port = Number(process.env.PORT ?? 4001)
// The application's own data, which the gateway knows nothing about: who may join which room.
const members = new Map([['alice', ['room:alice', 'lobby']]])

/** The handshake's `{ gateway, timestamp, signature }`: one of the `v1,…` signatures (two during a rotation) over `gateway.timestamp`. */
function signedByGateway (auth: Record<string, unknown>): boolean {
  const { gateway, timestamp, signature } = auth
  if (typeof gateway !== 'string' || typeof timestamp !== 'number' || typeof signature !== 'string') return false
  if (Math.abs(Date.now() / 1000 - timestamp) > 5 * 60) return false
  const expected = createHmac('sha256', key).update(`${gateway}.${timestamp}`).digest()
  return signature.split(' ').some((candidate) => {
    const mac = Buffer.from(candidate.slice('v1,'.length), 'base64')
    return candidate.startsWith('v1,') && mac.length === expected.length && timingSafeEqual(mac, expected)
  })
}

const refuse = (code: string, message: string): unknown => ({ error: { code, message } })

function answer (e: SparkEvent, gateway: Socket): unknown {
  if (e.type === 'join') return members.get(e.principal.sub)?.includes(e.room ?? '') === true ? { data: null } : refuse('FORBIDDEN', 'not a member')
  if (e.type !== 'event') return { data: null }
  if (e.event !== 'order:create') return refuse('NOT_FOUND', `no handler for ${e.event}`)
  const { item, quantity } = (e.data ?? {}) as { item?: unknown, quantity?: unknown }
  if (typeof item !== 'string' || typeof quantity !== 'number' || quantity <= 0) return refuse('VALIDATION_FAILED', 'an order needs an item and a quantity above 0')
  const orderId = randomUUID()
  // Back to the room through the gateway, on the same connection (only in the route's namespace).
  const message = { namespace: e.namespace, room: e.room, event: 'order:accepted', data: { orderId, item, quantity, by: e.principal.sub } }
  gateway.timeout(5000).emit('spark:publish', message, (err: Error | null, ack: unknown) => { console.log('spark:publish', err?.message ?? ack) })
  return { data: { orderId, status: 'accepted' } }
}

const http = createServer()
const io = new Server(http, { transports: ['websocket'] })
const spark = io.of('/spark')
spark.use((socket, next) => { next(signedByGateway(socket.handshake.auth) ? undefined : new Error('bad signature')) })
spark.on('connection', (socket) => {
  console.log('gateway connected', socket.handshake.auth.gateway)
  socket.on('spark:event', (event: SparkEvent, ack: (answer: unknown) => void) => {
    console.log(event.type, event.event, event.room, event.principal.sub)
    ack(answer(event, socket))
  })
})
http.listen(port, '127.0.0.1', () => { console.log(`Socket.IO backend on http://127.0.0.1:${port} (namespace /spark)`) })
