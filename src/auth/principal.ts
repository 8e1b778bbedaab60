import { gatewayError, type GatewayError } from '../errors.js'
import type { KeyRateLimit, Scope } from '../keys/types.js'

/**
 * Who is calling, as every gate sees it: REST hooks, socket connection
 * middleware and the per-packet path all work from this one shape.
 */
export interface Principal {
  /** The API key behind the call (`root` for ADMIN_API_KEY). */
  keyId: string
  /** The subject: the key id, or the end user of a delegated token. */
  sub: string
  /** The key's tenant (SPEC §14): the rooms, subjects and refusals this caller can reach. */
  tenant: string
  scopes: readonly Scope[]
  policyId: string | null
  /** Namespace down-scope from the token; undefined = every namespace the policy allows. */
  ns?: readonly string[]
  /** Token id and expiry (seconds since the epoch) when the call came with a token. */
  jti?: string
  exp?: number
  /** The generation of the key's secret the credential came from (SPEC §3 rotation): a rotation's grace over, older ones stop. */
  keyGeneration?: number
  /** The key's publish limit and live-connection cap, as its record had them at authentication. */
  rateLimit: KeyRateLimit | null
  maxConnections: number | null
  via: 'key' | 'token' | 'root'
}

export const ROOT_KEY_ID = 'root'

/** The token's namespace down-scope (`ns`): one rule for handshakes, refreshes and HTTP publish. */
export function namespaceRefusal (principal: Pick<Principal, 'ns'>, namespace: string): GatewayError | undefined {
  return principal.ns !== undefined && !principal.ns.includes(namespace) ? gatewayError('FORBIDDEN', `The token is not valid for ${namespace}`) : undefined
}

/** The same rule where a refusal is thrown (an authentication's authorize step). */
export function assertNamespaceAllowed (principal: Pick<Principal, 'ns'>, namespace: string): void {
  const refused = namespaceRefusal(principal, namespace)
  if (refused !== undefined) throw refused
}
