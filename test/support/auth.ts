import type { FastifyInstance, LightMyRequestResponse } from 'fastify'

/** The §6 code an authentication refuses with, or 'ALLOWED' when it does not refuse. */
export async function refusalCode (attempt: Promise<unknown>): Promise<string> {
  try {
    await attempt
    return 'ALLOWED'
  } catch (err) {
    return String((err as { code?: unknown }).code)
  }
}

/** POST /auth/token with a key in `X-API-Key` from `ip`. */
export async function requestToken (app: FastifyInstance, apiKey: string | undefined, ip = '127.0.0.1', body: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { ...(apiKey !== undefined ? { 'x-api-key': apiKey } : {}), ...headers },
    payload: body,
    remoteAddress: ip
  })
}

/** A request to an admin endpoint with a bearer token. */
export async function adminWithBearer (app: FastifyInstance, token: string, ip = '127.0.0.1'): Promise<LightMyRequestResponse> {
  return await app.inject({ url: '/v1/keys', headers: { authorization: `Bearer ${token}` }, remoteAddress: ip })
}

/** Status and code of a response, for one-line comparisons. */
export function outcome (res: LightMyRequestResponse): string {
  let code = ''
  try { code = String(res.json<{ code?: string }>().code ?? '') } catch {}
  return `${res.statusCode}${code === '' ? '' : ` ${code}`}`
}

/** Collects every alert an app raises. */
export function collectAlerts (app: FastifyInstance): Array<{ kind: string, ip?: string, keyId?: string, count?: number, at: string }> {
  const alerts: Array<{ kind: string, ip?: string, keyId?: string, count?: number, at: string }> = []
  app.alerts.onAlert((alert) => { alerts.push(alert) })
  return alerts
}
