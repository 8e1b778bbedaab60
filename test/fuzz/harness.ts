import { Worker } from 'node:worker_threads'
import type { CampaignOptions, CampaignResult } from './campaign.js'
import { FuzzGateway, heapAfterGc, type Stores } from './gateway.js'
import type { Target } from './lanes.js'
import type { FromGateway, ToGateway, WorkerData } from './worker.js'

type Tap = { teardown: (fn: () => unknown) => void }

/** Connections per input kind: about in proportion to each kind's share of the inputs and its round trips. */
export const DEFAULT_LANES: Target['lanes'] = { socket: 4, handshake: 1, transport: 1, polling: 2, rest: 2 }

export interface FuzzOptions extends Omit<CampaignOptions, 'onProgress'> {
  /** What the gateway stores its state in (default: the TEST_* servers when set, else embedded). */
  stores?: Stores
  /** How long one input may go without an answer or a close before it is a hang. */
  hangMs?: number
  /** Deadline of one bystander round trip (publish, ack, delivery). */
  roundTripMs?: number
  lanes?: Partial<Target['lanes']>
  onProgress?: CampaignOptions['onProgress']
  /** Called once the gateway is up, before the first input (what it runs on, for the record). */
  onStart?: (gateway: FuzzGateway) => void
}

/**
 * Fuzzes a real gateway: builds it in this thread (test helpers, limits
 * raised), puts its bystanders in a room, and runs the campaign in a worker
 * thread that sends the inputs over real connections; after every batch the
 * worker asks this thread for its verdict (crash, error line, bystanders).
 */
export async function fuzz (t: Tap, options: FuzzOptions): Promise<CampaignResult> {
  const { stores, hangMs, roundTripMs, lanes, onProgress, onStart, ...campaign } = options
  const gateway = await FuzzGateway.start(t, { stores, roundTripMs })
  t.teardown(() => { gateway.close() })
  onStart?.(gateway)
  const target: Target = { url: gateway.url, port: gateway.port, credentials: gateway.credentials, hangMs: hangMs ?? 10_000, lanes: { ...DEFAULT_LANES, ...lanes } }
  const worker = spawnTs(new URL('./worker.ts', import.meta.url), { target, options: campaign } satisfies WorkerData)
  try {
    return await new Promise<CampaignResult>((resolve, reject) => {
      worker.on('message', (message: ToGateway) => {
        if (message.type === 'call') {
          void answer(gateway, message.name).then((value) => { worker.postMessage({ type: 'reply', id: message.id, value } satisfies FromGateway) }, reject)
        } else if (message.type === 'progress') {
          // The worker's own heap is the fuzzer's: the figure that matters is this thread's, the gateway's.
          onProgress?.({ ...message.progress, heapBytes: process.memoryUsage().heapUsed })
        } else if (message.type === 'done') {
          resolve({ ...message.result, stores: gateway.stores })
        } else {
          reject(new Error(`fuzzing worker failed: ${message.message}`))
        }
      })
      worker.on('error', reject)
      worker.on('exit', (code) => { reject(new Error(`fuzzing worker exited (${code}) before its result`)) })
    })
  } finally {
    await worker.terminate()
  }
}

async function answer (gateway: FuzzGateway, name: 'check' | 'heap' | 'roundTrips'): Promise<unknown> {
  if (name === 'check') return await gateway.check()
  if (name === 'heap') return await heapAfterGc()
  const { count, totalMs, maxMs } = gateway.roundTrips
  return { count, meanMs: count === 0 ? 0 : totalMs / count, maxMs }
}

/**
 * A worker running a TypeScript module: Node 20 does not hand the parent's
 * loader hooks to workers, so the worker registers tsx itself first.
 */
function spawnTs (file: URL, workerData: unknown): Worker {
  const tsx = import.meta.resolve('tsx/esm/api')
  const code = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(file.href)});`
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData })
}
