// Policies: rules edited as JSON; the gateway's validation errors are shown beside the editor, "in use" on delete.
import { $, api, button, cell, parseJson, refusal } from './api.js'

interface PolicyView { id: string, name: string, rules: unknown[], createdAt: string }

let editing: string | undefined

function edit (policy: PolicyView | undefined): void {
  editing = policy?.id
  ;($('policy-name') as HTMLInputElement).value = policy?.name ?? ''
  ;($('policy-rules') as HTMLTextAreaElement).value = JSON.stringify(policy?.rules ?? [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }], null, 2)
  $('policy-save').textContent = policy === undefined ? 'Create policy' : `Save ${policy.name}`
  $('policy-errors').replaceChildren()
}

export async function loadPolicies (): Promise<void> {
  const page = await api<{ items: PolicyView[] }>('GET', '/v1/policies?limit=100')
  $('policy-rows').replaceChildren(...page.items.map((policy) => {
    const row = document.createElement('tr')
    row.dataset.id = policy.id
    const actions = document.createElement('td')
    actions.append(button('Edit', 'edit', () => { edit(policy) }), button('Delete', 'delete', () => {
      api('DELETE', `/v1/policies/${policy.id}`).then(() => { row.remove() }, (err: unknown) => { refusal(err) })
    }))
    row.append(cell(policy.name), cell(policy.id, true), cell(`${policy.rules.length} rule${policy.rules.length === 1 ? '' : 's'}`), actions)
    return row
  }))
}

export function setUpPolicies (): void {
  edit(undefined)
  $('policy-new').addEventListener('click', () => { edit(undefined) })
  $('policy-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const errors = $('policy-errors')
    errors.replaceChildren()
    const rules = parseJson(($('policy-rules') as HTMLTextAreaElement).value, 'The rules', errors)
    if (rules === undefined) return
    const body = { name: ($('policy-name') as HTMLInputElement).value, rules }
    const saved = editing === undefined ? api('POST', '/v1/policies', body) : api('PUT', `/v1/policies/${editing}`, body)
    saved.then(async () => { edit(undefined); await loadPolicies() }, (err: unknown) => { refusal(err, errors) })
  })
}
