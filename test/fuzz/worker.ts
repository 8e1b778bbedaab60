import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { runCampaign, type CampaignOptions, type CampaignResult, type GatewayLink } from './campaign.js'
import { FuzzDriver, type Target } from './lanes.js'
import type { Problem } from './problems.js'

/**
 * The fuzzing side of a run, in a worker thread: fast-check, the inputs'
 * connections and the shrinking, on the second core, while the gateway's
 * thread serves the inputs and judges each batch (harness.ts).
 */

export interface WorkerData { target: Target, options: Omit<CampaignOptions, 'onProgress'> }
export type ToGateway =
  | { type: 'call', id: number, name: 'check' | 'heap' | 'roundTrips' }
  | { type: 'progress', progress: Parameters<NonNullable<CampaignOptions['onProgress']>>[0] }
  | { type: 'done', result: CampaignResult }
  | { type: 'failed', message: string }
export interface FromGateway { type: 'reply', id: number, value: unknown }

// Loaded outside a worker (a test runner given this folder), it does nothing.
if (parentPort !== null) await runInWorker(parentPort)

async function runInWorker (port: MessagePort): Promise<void> {
  const { target, options } = workerData as WorkerData
  const post = (message: ToGateway): void => { port.postMessage(message) }

  const waiting = new Map<number, (value: unknown) => void>()
  let calls = 0
  port.on('message', (message: FromGateway) => {
    waiting.get(message.id)?.(message.value)
    waiting.delete(message.id)
  })
  const call = async <T>(name: 'check' | 'heap' | 'roundTrips'): Promise<T> => await new Promise<T>((resolve) => {
    const id = ++calls
    waiting.set(id, resolve as (value: unknown) => void)
    post({ type: 'call', id, name })
  })

  const gateway: GatewayLink = {
    check: async () => await call<Problem[]>('check'),
    heap: async () => await call<number>('heap'),
    roundTrips: async () => await call<CampaignResult['roundTrips']>('roundTrips')
  }

  const driver = new FuzzDriver(target)
  try {
    const result = await runCampaign(driver, gateway, { ...options, onProgress: (progress) => { post({ type: 'progress', progress }) } })
    post({ type: 'done', result })
  } catch (err) {
    post({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  } finally {
    driver.close()
  }
}
