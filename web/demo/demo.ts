// The chat demo (SPEC §13): the SDK's browser bundle, a key with token:delegate pasted by the user (a demo
// only: a real app keeps its key on its backend and hands the browser tokens, see README "Client SDK").
import { createClient, GatewayError, type Client, type ErrorCode, type Namespace, type RelayedMessage } from '../../src/sdk/index.js'

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T

let client: Client | undefined
let chat: Namespace | undefined
let room = 'lobby'

function show (text: string, className = ''): void {
  const item = document.createElement('li')
  if (className !== '') item.className = className
  item.textContent = text
  $('log').append(item)
  $('log').scrollTop = $('log').scrollHeight
}

function showMessage (message: RelayedMessage<{ text?: unknown }>): void {
  const item = document.createElement('li')
  const from = document.createElement('span')
  from.className = 'from'
  from.textContent = message.from.sub
  item.append(from, document.createTextNode(String(message.data?.text ?? JSON.stringify(message.data))))
  item.dataset.id = message.id
  $('log').append(item)
  $('log').scrollTop = $('log').scrollHeight
}

/** Every refusal shown with its §6 code and message, newest first. */
function refusal (err: unknown): void {
  const box = document.createElement('div')
  box.className = 'refusal'
  const code = document.createElement('strong')
  code.className = 'code'
  if (err instanceof GatewayError) {
    code.textContent = err.code
    box.append(code, document.createTextNode(` ${err.message}`))
  } else {
    code.textContent = 'ERROR'
    box.append(code, document.createTextNode(` ${String(err)}`))
  }
  $('refusals').prepend(box)
}

async function refreshPresence (): Promise<void> {
  if (chat === undefined) return
  try {
    const { members } = await chat.presence(room)
    $('presence').replaceChildren(...members.map(({ sub, connections }) => {
      const item = document.createElement('li')
      item.textContent = connections > 1 ? `${sub} (${connections} tabs)` : sub
      return item
    }))
  } catch (err) { refusal(err) }
}

async function join (key: string, name: string): Promise<void> {
  client?.close()
  client = createClient({
    url: location.origin,
    getToken: async () => {
      const res = await fetch('/auth/token', { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify({ sub: name }) })
      const body = await res.json() as { accessToken?: string, expiresIn?: number, code?: string, message?: string }
      if (!res.ok || body.accessToken === undefined) throw new GatewayError((body.code ?? 'UNAVAILABLE') as ErrorCode, body.message ?? `token request failed (${res.status})`)
      return { accessToken: body.accessToken, expiresIn: body.expiresIn ?? 900 }
    }
  })
  client.on('stopped', (err) => { refusal(err); show(`disconnected: ${err.code}`, 'notice') })
  client.on('gap', () => { show('some messages were missed while away', 'notice') })
  chat = client.namespace('/chat')
  chat.on('message', showMessage)
  chat.on('presence:join', () => { void refreshPresence() })
  chat.on('presence:leave', () => { void refreshPresence() })
  await chat.join(room)
  $('title').textContent = room
  $('chat').classList.remove('hidden')
  document.body.dataset.joined = 'true'
  for (const message of await chat.history(room, 20)) showMessage(message as RelayedMessage<{ text?: unknown }>)
  show(`joined ${room} as ${name}`, 'notice')
  await refreshPresence()
}

async function send (text: string): Promise<void> {
  if (chat === undefined) return
  const { id } = await chat.publish('message', room, { text })
  showMessage({ id, room, from: { sub: `${($('name') as HTMLInputElement).value} (you)` }, data: { text }, ts: Date.now() })
}

$('join').addEventListener('submit', (event) => {
  event.preventDefault()
  room = ($('room') as HTMLInputElement).value
  join(($('key') as HTMLInputElement).value, ($('name') as HTMLInputElement).value).catch(refusal)
})
$('send').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = $('text') as HTMLInputElement
  send(input.value).catch(refusal)
  input.value = ''
})
$('burst').addEventListener('click', () => {
  for (let i = 0; i < 10; i++) send(`burst ${i + 1}`).catch(refusal)
})
