import { errorCodes, type FastifyError, type FastifyRequest } from 'fastify'
import { gatewayError, type GatewayError } from '../errors.js'
import { jsonShapeProblem } from '../protocol/json-shape.js'

type Done = (err: Error | null, body?: unknown) => void

const BODY_REFUSED = Symbol('bodyRefused')

/**
 * The JSON body parser of every route: JSON.parse, then one iterative walk
 * that refuses nesting past SOCKET_MAX_DEPTH and prototype-poisoning keys
 * (replacing secure-json-parse's scan, so a body is walked once). Each
 * refusal says what was refused.
 */
export function jsonBodyParser (maxDepth: number) {
  return (_req: FastifyRequest, body: string, done: Done): void => {
    if (body.length === 0) return done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY())
    let value: unknown
    try {
      value = JSON.parse(body)
    } catch {
      return done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY())
    }
    const problem = jsonShapeProblem(value, maxDepth, true)
    if (problem === undefined) return done(null, value)
    done(refusedBody(problem === 'depth'
      ? `The body is nested more than ${maxDepth} levels deep`
      : 'The body may not contain a __proto__ key, nor a constructor key holding a prototype'))
  }
}

function refusedBody (message: string): GatewayError {
  const err = gatewayError('VALIDATION_FAILED', message)
  ;(err as GatewayError & { [BODY_REFUSED]?: true })[BODY_REFUSED] = true
  return err
}

/** A body that could not be read as acceptable JSON (so it carries no credential); a too-large body is not one. */
export function isUnreadableBody (err: FastifyError): boolean {
  if ((err as FastifyError & { [BODY_REFUSED]?: true })[BODY_REFUSED] === true) return true
  return typeof err.code === 'string' && err.code.startsWith('FST_ERR_CTP_') && err.code !== 'FST_ERR_CTP_BODY_TOO_LARGE'
}
