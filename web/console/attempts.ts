// Authentication attempts: refusals by reason over the last minutes (a small bar chart) and the newest rows.
import { $, api, cell } from './api.js'

interface AttemptRow { at: string, keyId: string | null, ip: string | null, transport: string, namespace: string | null, outcome: string, reason: string | null, count: number }
const WINDOW_MINUTES = 15

export async function loadAttempts (): Promise<void> {
  const since = new Date(Date.now() - WINDOW_MINUTES * 60_000).toISOString()
  const [newest, refused] = await Promise.all([
    api<{ items: AttemptRow[] }>('GET', '/v1/audit?limit=20'),
    api<{ items: AttemptRow[] }>('GET', `/v1/audit?limit=100&outcome=refused&since=${encodeURIComponent(since)}`)
  ])
  const byReason = new Map<string, number>()
  for (const row of refused.items) byReason.set(row.reason ?? 'unknown', (byReason.get(row.reason ?? 'unknown') ?? 0) + row.count)
  const most = Math.max(1, ...byReason.values())
  $('refusal-chart').replaceChildren(...[...byReason].sort((a, b) => b[1] - a[1]).map(([reason, count]) => {
    const bar = document.createElement('div')
    bar.className = 'bar'
    const label = document.createElement('span')
    label.textContent = `${reason} ${count}`
    const fill = document.createElement('span')
    fill.className = 'fill'
    // A width set through the CSSOM, which style-src 'self' allows (no inline style attribute is parsed).
    fill.style.width = `${Math.round(100 * count / most)}%`
    bar.append(fill, label)
    return bar
  }))
  $('chart-empty').classList.toggle('hidden', byReason.size > 0)
  $('attempt-rows').replaceChildren(...newest.items.map((row) => {
    const tr = document.createElement('tr')
    tr.append(cell(new Date(row.at).toLocaleTimeString()), cell(row.outcome), cell(row.reason ?? ''), cell(row.transport), cell(row.namespace ?? ''), cell(row.keyId ?? '', true), cell(row.ip ?? '', true), cell(String(row.count)))
    return tr
  }))
}
