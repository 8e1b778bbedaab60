// An HTTP backend behind a Spark Gateway route (README, "Routing to your backend").
//   SPARK_ROUTE_SECRET=whsec_… [SPARK_PUBLISH_KEY=spk_…] [GATEWAY_URL=…] [PORT=4000] npx tsx examples/http-backend.ts
import { randomUUID } from 'node:crypto'
import { createServer, type ServerResponse } from 'node:http'
// A devDependency of this repo (the tests verify with it); a real backend lists it in its own dependencies.
import { Webhook } from 'standardwebhooks'

/** What the gateway POSTs for a routed event (SPEC §10). */
interface SparkEvent {
  id: string
  type: 'event' | 'connect' | 'join' | 'disconnect' | 'leave'
  namespace: string
  room: string | null
  event: string
  data: unknown
  ts: number
  socketId: string
  principal: { sub: string, keyId: string, scopes: string[], ns: string[] | null }
}
type Answer = [status: number, body: unknown]

const secret = process.env.SPARK_ROUTE_SECRET ?? ''
if (!secret.startsWith('whsec_')) throw new Error('SPARK_ROUTE_SECRET must be the whsec_… secret POST /v1/routes answered with')
const webhook = new Webhook(secret)
const port = Number(process.env.PORT ?? 4000)
const gatewayUrl = process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000'
const publishKey = process.env.SPARK_PUBLISH_KEY
// The application's own data, which the gateway knows nothing about: who may join which room.
const members = new Map([['alice', ['room:alice', 'lobby']]])

const refuse = (status: number, code: string, message: string): Answer => [status, { error: { code, message } }]

function answer (e: SparkEvent): Answer {
  if (e.type === 'join') return members.get(e.principal.sub)?.includes(e.room ?? '') === true ? [200, { data: null }] : refuse(403, 'FORBIDDEN', 'not a member')
  if (e.type !== 'event') return [200, { data: null }]
  if (e.event !== 'order:create') return refuse(404, 'NOT_FOUND', `no handler for ${e.event}`)
  const { item, quantity } = (e.data ?? {}) as { item?: unknown, quantity?: unknown }
  if (typeof item !== 'string' || typeof quantity !== 'number' || quantity <= 0) {
    return refuse(400, 'VALIDATION_FAILED', 'an order needs an item and a quantity above 0')
  }
  const orderId = randomUUID()
  if (e.room !== null) void publish(e.namespace, e.room, 'order:accepted', { orderId, item, quantity, by: e.principal.sub })
  return [200, { data: { orderId, status: 'accepted' } }]
}

/** Tells the room through the gateway's own publish endpoint (a key with scope publish). */
async function publish (namespace: string, room: string, event: string, data: unknown): Promise<void> {
  if (publishKey === undefined) return
  try {
    const res = await fetch(`${gatewayUrl}/v1/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': publishKey },
      body: JSON.stringify({ namespace, room, event, data })
    })
    console.log('published', event, res.status, await res.text())
  } catch (err) {
    console.error('publish failed', err)
  }
}

function send (res: ServerResponse, [status, body]: Answer): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/spark') return send(res, refuse(404, 'NOT_FOUND', 'POST /spark'))
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8')
    const header = (name: string): string => String(req.headers[name] ?? '')
    let event: SparkEvent
    try {
      // Checks the signature (either one during a rotation) and refuses timestamps over 5 minutes old.
      event = webhook.verify(body, { 'webhook-id': header('webhook-id'), 'webhook-timestamp': header('webhook-timestamp'), 'webhook-signature': header('webhook-signature') }) as SparkEvent
    } catch {
      return send(res, refuse(401, 'UNAUTHORIZED', 'bad signature'))
    }
    console.log(event.type, event.event, event.room, event.principal.sub)
    send(res, answer(event))
  })
}).listen(port, '127.0.0.1', () => { console.log(`HTTP backend on http://127.0.0.1:${port}/spark`) })
