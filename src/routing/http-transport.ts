import type { KeyObject } from 'node:crypto'
import { Pool } from 'undici'
import { readAnswer, type CallResult, type UpstreamTransport } from './transport.js'
import { webhookHeaders } from './signing.js'
import type { RouteEvent } from './types.js'

// An answer becomes one ack to one client: a backend sending more is cut off, and the call failed.
export const MAX_ANSWER_BYTES = 1024 * 1024
const FAILED: CallResult = { kind: 'failed' }
const TIMEOUT: CallResult = { kind: 'timeout' }
const UNREACHABLE: CallResult = { kind: 'unreachable' }

export interface HttpTransportOptions {
  url: string
  timeoutMs: number
  maxInFlight: number
  maxDepth: number
  /** The keys to sign with now (two during a rotation's grace). */
  signingKeys: () => readonly KeyObject[]
}

/**
 * An HTTP upstream: one undici keep-alive pool (no pipelining, at most
 * `maxInFlight` connections), a signed JSON POST per event (Standard
 * Webhooks headers). Redirects are never followed (a 3xx is a failure), and
 * nothing of the client's own request (headers, token) is ever sent.
 */
export function createHttpTransport (options: HttpTransportOptions): UpstreamTransport {
  const url = new URL(options.url)
  const path = url.pathname + url.search
  const pool = new Pool(url.origin, {
    connections: options.maxInFlight,
    pipelining: 1,
    connectTimeout: options.timeoutMs,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs
  })

  async function send (id: string, body: string, signal: AbortSignal): Promise<CallResult> {
    const { statusCode, body: stream } = await pool.request({
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...webhookHeaders(options.signingKeys(), id, body) },
      body,
      signal
    })
    const expect = statusCode >= 200 && statusCode < 300 ? 'answer' : statusCode >= 400 && statusCode < 500 ? 'refusal' : undefined
    if (expect === undefined) {
      stream.resume()
      return FAILED
    }
    const chunks: Buffer[] = []
    let bytes = 0
    for await (const chunk of stream) {
      bytes += (chunk as Buffer).length
      if (bytes > MAX_ANSWER_BYTES) {
        stream.destroy()
        return FAILED
      }
      chunks.push(chunk as Buffer)
    }
    let value: unknown
    try {
      // Decoded whole: a character split across two chunks stays one character.
      value = JSON.parse(Buffer.concat(chunks, bytes).toString('utf8'))
    } catch {
      return FAILED
    }
    return readAnswer(value, expect, options.maxDepth)
  }

  return {
    ready: true,
    async call (event: RouteEvent, timeoutMs) {
      const body = JSON.stringify(event)
      const abort = new AbortController()
      const timer = setTimeout(() => { abort.abort() }, timeoutMs)
      try {
        return await send(event.id, body, abort.signal)
      } catch (err) {
        if (abort.signal.aborted) return TIMEOUT
        const code = (err as { code?: unknown }).code
        if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return TIMEOUT
        return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'UND_ERR_SOCKET' ? UNREACHABLE : FAILED
      } finally {
        clearTimeout(timer)
      }
    },
    async close () {
      await pool.destroy()
    }
  }
}
