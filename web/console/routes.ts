// Routes (SPEC §10): what goes to the user's backends, read-only here (their secrets are never listed).
import { $, api, cell } from './api.js'

interface RouteView { id: string, name: string, namespace: string, events: string[], mode: string, relay: boolean, upstream: { type: string, url: string } }

export async function loadRoutes (): Promise<void> {
  const page = await api<{ items: RouteView[] }>('GET', '/v1/routes?limit=100')
  $('route-rows').replaceChildren(...page.items.map((route) => {
    const row = document.createElement('tr')
    row.append(cell(route.name), cell(route.namespace), cell(route.events.join(' '), true), cell(`${route.mode}${route.relay ? ' + relay' : ''}`), cell(`${route.upstream.type} ${route.upstream.url}`, true))
    return row
  }))
  $('routes-empty').classList.toggle('hidden', page.items.length > 0)
}
