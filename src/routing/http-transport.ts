import type { KeyObject } from 'node:crypto'
import { Pool, type Dispatcher } from 'undici'
import { readAnswer, type CallResult, type UpstreamTransport } from './transport.js'
import { webhookHeaders } from './signing.js'
import type { RouteEvent } from './types.js'

// An answer becomes one ack to one client: a backend sending more is cut off, and the call failed.
export const MAX_ANSWER_BYTES = 1024 * 1024
const FAILED: CallResult = { kind: 'failed' }
const TIMEOUT: CallResult = { kind: 'timeout' }
const UNREACHABLE: CallResult = { kind: 'unreachable' }
const TIMED_OUT = new Error('routed call timed out')
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

export interface HttpTransportOptions {
  url: string
  timeoutMs: number
  maxInFlight: number
  maxDepth: number
  /** The keys to sign with now (two during a rotation's grace). */
  signingKeys: () => readonly KeyObject[]
}

/** How a dispatch failed, as the route counts it. */
function failureOf (err: Error): CallResult {
  if (err === TIMED_OUT) return TIMEOUT
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return TIMEOUT
  return typeof code === 'string' && UNREACHABLE_CODES.has(code) ? UNREACHABLE : FAILED
}

/**
 * An HTTP upstream: one undici keep-alive pool (no pipelining, at most
 * `maxInFlight` connections), a signed JSON POST per event (Standard
 * Webhooks headers). Redirects are never followed (a 3xx is a failure), and
 * nothing of the client's own request (headers, token) is ever sent. Calls go
 * through undici's dispatch API: its `request()` costs each call a stream,
 * an AbortController and its listeners, which measured about a fifth of a
 * routed event's CPU (bench `routing`).
 */
export function createHttpTransport (options: HttpTransportOptions): UpstreamTransport {
  const url = new URL(options.url)
  const path = url.pathname + url.search
  const maxDepth = options.maxDepth
  const pool = new Pool(url.origin, {
    connections: options.maxInFlight,
    pipelining: 1,
    connectTimeout: options.timeoutMs,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs
  })

  return {
    ready: true,
    async call (event: RouteEvent, timeoutMs) {
      const body = JSON.stringify(event)
      const request: Dispatcher.DispatchOptions = {
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...webhookHeaders(options.signingKeys(), event.id, body) },
        body
      }
      return await dispatchCall(pool, request, timeoutMs, maxDepth)
    },
    async close () {
      await pool.destroy()
    }
  }
}

/** One POST through the pool, with one deadline for the whole call (connect, headers and body together). */
async function dispatchCall (pool: Pool, request: Dispatcher.DispatchOptions, timeoutMs: number, maxDepth: number): Promise<CallResult> {
  return await new Promise<CallResult>((resolve) => {
    let controller: Dispatcher.DispatchController | undefined
    let expect: 'answer' | 'refusal' | undefined
    let chunks: Buffer[] = []
    let bytes = 0
    let settled = false
    const settle = (result: CallResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(result)
    }
    const timer = setTimeout(() => {
      settle(TIMEOUT)
      controller?.abort(TIMED_OUT)
    }, timeoutMs)
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart (started) {
        controller = started
        if (settled) started.abort(TIMED_OUT)
      },
      onResponseStart (_controller, statusCode) {
        expect = statusCode >= 200 && statusCode < 300 ? 'answer' : statusCode >= 400 && statusCode < 500 ? 'refusal' : undefined
      },
      onResponseData (current, chunk) {
        // A status that cannot carry an answer is failed whatever follows; its body is only drained.
        if (expect === undefined) return
        bytes += chunk.length
        if (bytes > MAX_ANSWER_BYTES) {
          chunks = []
          settle(FAILED)
          current.abort(new Error('answer too large'))
          return
        }
        chunks.push(chunk)
      },
      onResponseEnd () {
        if (expect === undefined) return settle(FAILED)
        let value: unknown
        try {
          // Decoded whole: a character split across two chunks stays one character.
          value = JSON.parse(Buffer.concat(chunks, bytes).toString('utf8'))
        } catch {
          return settle(FAILED)
        }
        settle(readAnswer(value, expect, maxDepth))
      },
      onResponseError (_controller, err) {
        settle(failureOf(err))
      }
    }
    try {
      pool.dispatch(request, handler)
    } catch (err) {
      // A pool already destroyed (its route being closed) may throw rather than call back.
      settle(failureOf(err as Error))
    }
  })
}
