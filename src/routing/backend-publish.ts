import { PublishRequestCheck } from '../messages/publish-request.js'
import type { Delivered, DeliverResult, PublishRequest } from '../plugins/messages.js'
import { isGatewayError, type GatewayError } from '../errors.js'
import { isReservedEvent } from '../protocol/events.js'
import { jsonShapeProblem } from '../protocol/json-shape.js'
import { DEFAULT_TENANT } from '../protocol/rooms.js'

export interface BackendPublishContext {
  /** The route's namespace now, or undefined once the route is gone. */
  namespace: () => string | undefined
  maxDepth: number
  /** Delivers the checked message to the rooms of `tenant` (the publish pipeline's outcome). */
  deliver: (tenant: string, request: PublishRequest) => DeliverResult
  /** A throw while delivering (a bug): reported, and the backend answered UNAVAILABLE. */
  fault: (err: unknown) => void
}

type Ack = (answer: unknown) => void

/**
 * A backend's `spark:publish` (SPEC §10): checked like `POST /v1/publish`
 * (envelope, reserved names, nesting), within the route's namespace, and
 * acked the same way. A backend serves whichever tenants its events came
 * from (their `principal.tenant`), so it names the tenant, like the root admin.
 */
export function backendPublishHandler (context: BackendPublishContext): (message: unknown, ack: Ack | undefined) => void {
  return (message, ack) => {
    const reply: Ack = ack ?? (() => {})
    const refuse = (code: string, text: string): void => { reply({ ok: false, error: { code, message: text } }) }
    const namespace = context.namespace()
    if (namespace === undefined) return refuse('NOT_FOUND', 'The route is gone')
    if (!PublishRequestCheck.Check(message)) return refuse('VALIDATION_FAILED', 'spark:publish takes { namespace, room, event, data, tenant? }')
    if (message.namespace !== namespace) return refuse('FORBIDDEN', `This route publishes to ${namespace} only`)
    if (isReservedEvent(message.event)) return refuse('FORBIDDEN', `${message.event} is reserved`)
    if (jsonShapeProblem(message.data, context.maxDepth) !== undefined) return refuse('VALIDATION_FAILED', `data must be JSON nested at most ${context.maxDepth} levels deep`)
    const failed = (err: unknown): void => {
      context.fault(err)
      refuse('UNAVAILABLE', 'The gateway could not deliver this message')
    }
    const settle = (result: Delivered | GatewayError): void => {
      if (isGatewayError(result)) refuse(result.code, result.message)
      else reply({ ok: true, id: result.id })
    }
    let result: DeliverResult
    try {
      const { tenant = DEFAULT_TENANT, ...request } = message
      result = context.deliver(tenant, request)
    } catch (err) {
      return failed(err)
    }
    if (result instanceof Promise) result.then(settle, failed)
    else settle(result)
  }
}
