// Presence of a room (SPEC §11), in any tenant: who is there across every instance.
import { $, api, refusal } from './api.js'

export function setUpPresence (): void {
  $('presence-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const query = new URLSearchParams({ namespace: ($('presence-namespace') as HTMLSelectElement).value, room: ($('presence-room') as HTMLInputElement).value })
    const tenant = ($('presence-tenant') as HTMLInputElement).value.trim()
    if (tenant !== '') query.set('tenant', tenant)
    api<{ count: number, members: Array<{ sub: string, connections: number }>, truncated: boolean }>('GET', `/v1/presence?${query.toString()}`).then((snapshot) => {
      $('presence-count').textContent = `${snapshot.count} subject${snapshot.count === 1 ? '' : 's'}${snapshot.truncated ? ' (first 1,000 listed)' : ''}`
      $('presence-members').replaceChildren(...snapshot.members.map(({ sub, connections }) => {
        const item = document.createElement('li')
        item.textContent = `${sub} — ${connections} connection${connections === 1 ? '' : 's'}`
        return item
      }))
    }, (err: unknown) => { refusal(err) })
  })
}
