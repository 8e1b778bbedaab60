import t from 'tap'
import WebSocket from 'ws'
import { buildApp, listen } from '../helper.js'
import { eventually } from '../support/sockets.js'

type Opened = { ws: WebSocket, status: 'open' } | { ws: WebSocket, status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** A raw Engine.IO websocket (no Socket.IO namespace): open, or the HTTP status it was refused with. */
async function rawWebsocket (t: { teardown: (fn: () => void) => void }, url: string): Promise<Opened> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`)
  t.teardown(() => { ws.terminate() })
  return await new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, status: 'open' }))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => { body += chunk.toString() })
      res.on('end', () => resolve({ ws, status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    ws.once('error', reject)
  })
}

const pollingHandshake = async (url: string): Promise<Response> => await fetch(`${url}/socket.io/?EIO=4&transport=polling`)

t.test('Engine.IO handshakes past RATE_LIMIT_TRANSPORT are 429 with Retry-After, polling and websocket alike', async (t) => {
  const app = await buildApp(t, { RATE_LIMIT_TRANSPORT: '3/minute' })
  const url = await listen(app)
  for (let i = 0; i < 3; i++) t.equal((await pollingHandshake(url)).status, 200, `handshake ${i + 1}`)
  const refused = await pollingHandshake(url)
  t.equal(refused.status, 429)
  t.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After')
  t.match(await refused.json(), { statusCode: 429, code: 'RATE_LIMITED' }, 'the §4 body')
  const upgrade = await rawWebsocket(t, url)
  t.equal(upgrade.status, 429, 'a websocket handshake is refused before any Socket.IO packet')
  if (upgrade.status !== 'open') t.match(JSON.parse(upgrade.body), { code: 'RATE_LIMITED' })
  const metrics = await app.inject({ url: '/metrics' })
  t.match(metrics.body, /gateway_rate_limited_total\{scope="transport"\} 2/)
})

t.test('at most MAX_CONNECTIONS_PER_IP open Engine.IO connections per address; a closed one frees its place', async (t) => {
  const app = await buildApp(t, { MAX_CONNECTIONS_PER_IP: '2' })
  const url = await listen(app)
  const first = await rawWebsocket(t, url)
  const second = await rawWebsocket(t, url)
  t.same([first.status, second.status], ['open', 'open'])
  const third = await rawWebsocket(t, url)
  t.equal(third.status, 429, 'the third is refused')
  first.ws.close()
  await eventually(async () => (await rawWebsocket(t, url)).status === 'open', 10_000, 'a new connection once one closed')
})

t.test('a connection that connects no namespace is closed after 5 s, not Socket.IO\'s 45 s', async (t) => {
  const app = await buildApp(t)
  const url = await listen(app)
  const idle = await rawWebsocket(t, url)
  if (idle.status !== 'open') return t.fail(`not opened: ${idle.status}`)
  const openedAt = Date.now()
  const closed = new Promise<number>((resolve) => idle.ws.once('close', () => resolve(Date.now() - openedAt)))
  const ms = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 25_000))])
  t.ok(ms > 0, `closed after ${ms} ms (deadline 25 s)`)
  t.ok(ms >= 4000, 'and not before the 5 s')
})
