// Alerts as they happen (SPEC §7: `/system` room `admin`, through the SDK's browser bundle) and the
// connections per namespace of the instance that answers.
import { createClient, type Client } from '../../src/sdk/index.js'
import { $, api, cell, refusal } from './api.js'

let client: Client | undefined

export async function loadConnections (): Promise<void> {
  const { namespaces, connections } = await api<{ namespaces: Record<string, number>, connections: number }>('GET', '/v1/connections')
  $('connection-rows').replaceChildren(...Object.entries(namespaces).map(([name, count]) => {
    const row = document.createElement('tr')
    row.append(cell(name), cell(String(count)))
    return row
  }))
  $('connection-total').textContent = `${connections} Engine.IO connection${connections === 1 ? '' : 's'} on this instance`
}

/** Listens to the alerts with a token minted from the signed-in key (an admin key whose policy lets it join /system `admin`). */
export async function watchAlerts (): Promise<void> {
  if (client !== undefined) return
  client = createClient({
    url: location.origin,
    getToken: async () => await api<{ accessToken: string, expiresIn: number }>('POST', '/auth/token', { namespaces: ['/system'] })
  })
  client.on('stopped', (err) => { refusal(err); client = undefined })
  const system = client.namespace('/system')
  system.on<{ kind: string, at?: string } & Record<string, unknown>>('alert', (alert) => {
    const row = document.createElement('tr')
    const { kind, at, ...rest } = alert
    row.append(cell(new Date(at ?? Date.now()).toLocaleTimeString()), cell(kind), cell(JSON.stringify(rest), true))
    $('alert-rows').prepend(row)
  })
  await system.join('admin')
  $('alerts-state').textContent = 'listening on /system, room admin'
}

export function stopAlerts (): void {
  client?.close()
  client = undefined
}
