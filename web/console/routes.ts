// Routes (SPEC §10): what goes to the user's backends. Edited as JSON like policies; the signing secret is shown
// once, when a route is created or its secret rotated, and never listed.
import { $, api, button, cell, parseJson, refusal, revealSecret, setUpSecretBox } from './api.js'

interface RouteView { id: string, name: string, namespace: string, events: string[], mode: string, relay: boolean, upstream: { type: string, url: string }, createdAt: string, updatedAt: string }

const EXAMPLE = { name: 'orders', namespace: '/chat', events: ['order:*'], upstream: { type: 'http', url: 'https://backend.example/events' }, mode: 'request', timeoutMs: 5000, maxInFlight: 256, relay: false }
let editing: string | undefined

function edit (route: RouteView | undefined): void {
  editing = route?.id
  const { id, createdAt, updatedAt, ...definition } = route ?? { id: '', createdAt: '', updatedAt: '', ...EXAMPLE }
  ;($('route-definition') as HTMLTextAreaElement).value = JSON.stringify(definition, null, 2)
  $('route-save').textContent = route === undefined ? 'Create route' : `Save ${route.name}`
  $('route-errors').replaceChildren()
}

export async function loadRoutes (): Promise<void> {
  const page = await api<{ items: RouteView[] }>('GET', '/v1/routes?limit=100')
  $('route-rows').replaceChildren(...page.items.map((route) => {
    const row = document.createElement('tr')
    row.dataset.id = route.id
    const actions = document.createElement('td')
    actions.append(
      button('Edit', 'edit', () => { edit(route) }),
      button('Rotate secret', 'rotate', () => {
        const grace = prompt('Grace period in seconds (calls carry both signatures this long):', '0')
        if (grace === null) return
        api<{ secret: string }>('POST', `/v1/routes/${route.id}/rotate`, { gracePeriodSeconds: Number(grace) })
          .then(({ secret }) => { revealSecret('route-secret', secret) }, (err: unknown) => { refusal(err) })
      }),
      button('Delete', 'delete', () => {
        if (!confirm(`Delete route ${route.name}? Its events are relayed to their rooms again.`)) return
        api('DELETE', `/v1/routes/${route.id}`).then(() => { row.remove() }, (err: unknown) => { refusal(err) })
      })
    )
    row.append(cell(route.name), cell(route.namespace), cell(route.events.join(' '), true), cell(`${route.mode}${route.relay ? ' + relay' : ''}`), cell(`${route.upstream.type} ${route.upstream.url}`, true), actions)
    return row
  }))
  $('routes-empty').classList.toggle('hidden', page.items.length > 0)
}

export function setUpRoutes (): void {
  edit(undefined)
  setUpSecretBox('route-secret')
  $('route-new').addEventListener('click', () => { edit(undefined) })
  $('route-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const errors = $('route-errors')
    errors.replaceChildren()
    const definition = parseJson(($('route-definition') as HTMLTextAreaElement).value, 'The route', errors)
    if (definition === undefined) return
    const saved = editing === undefined
      ? api<{ secret: string }>('POST', '/v1/routes', definition).then(({ secret }) => { revealSecret('route-secret', secret) })
      : api('PUT', `/v1/routes/${editing}`, definition)
    saved.then(async () => { edit(undefined); await loadRoutes() }, (err: unknown) => { refusal(err, errors) })
  })
}
