import { gatewayError, type GatewayError } from '../errors.js'
import { can, type CompiledPolicy } from '../policies/engine.js'
import type { PolicySubject } from '../policies/types.js'
import { isReservedEvent } from './types.js'

/**
 * Whether `subject` may publish `event` to `room`: one rule for a socket's
 * emit and for POST /v1/publish. Event names the gateway or Socket.IO reserve
 * are refused whatever the policy says.
 */
export function publishRefusal (policy: CompiledPolicy, subject: PolicySubject, namespace: string, room: string, event: string): GatewayError | undefined {
  if (isReservedEvent(event)) return gatewayError('FORBIDDEN', `${event} is reserved`)
  if (!can(policy, subject, 'publish', namespace, room, event)) return gatewayError('FORBIDDEN', `Policy does not allow ${event} in ${room}`)
  return undefined
}
