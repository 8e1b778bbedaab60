// Request/response over a child process's IPC channel: the orchestrator drives
// servers and load generators with `call`, the children answer with `serve`.
import type { ChildProcess } from 'node:child_process'

interface Request { rpc: number, cmd: string, args: unknown }
interface Response { rpc: number, ok: boolean, result?: unknown, error?: string }

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each handler declares its own argument type (unknown would refuse them all)
export type Handlers = Record<string, (args: any) => unknown>

/** Answers the parent's calls; a handler may be async. Returns once the channel is open. */
export function serve (handlers: Handlers): void {
  if (process.send === undefined) throw new Error('bench child started without an IPC channel')
  process.on('message', (message: Request) => {
    if (typeof message?.rpc !== 'number') return
    const reply = (response: Omit<Response, 'rpc'>): void => { process.send?.({ rpc: message.rpc, ...response }) }
    const handler = handlers[message.cmd]
    if (handler === undefined) { reply({ ok: false, error: `unknown command ${message.cmd}` }); return }
    Promise.resolve().then(() => handler(message.args)).then(
      (result) => { reply({ ok: true, result }) },
      (err: unknown) => { reply({ ok: false, error: err instanceof Error ? err.stack ?? err.message : String(err) }) })
  })
  // The parent disappearing (Ctrl-C, crash) must not leave a pinned server running.
  process.on('disconnect', () => { process.exit(0) })
}

let nextId = 1
const pending = new WeakMap<ChildProcess, Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>>()

function table (child: ChildProcess): Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }> {
  let calls = pending.get(child)
  if (calls === undefined) {
    const created = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
    calls = created
    pending.set(child, created)
    child.on('message', (message: Response) => {
      const call = created.get(message?.rpc)
      if (call === undefined) return
      created.delete(message.rpc)
      if (message.ok) call.resolve(message.result)
      else call.reject(new Error(message.error))
    })
    child.on('exit', (code, signal) => {
      for (const call of created.values()) call.reject(new Error(`child exited (${signal ?? code}) before answering`))
      created.clear()
    })
  }
  return calls
}

/** Calls a command in a child; rejects with the child's error, or after `timeoutMs`. */
export async function call<T = unknown> (child: ChildProcess, cmd: string, args: unknown = {}, timeoutMs = 120_000): Promise<T> {
  const calls = table(child)
  const rpc = nextId++
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      calls.delete(rpc)
      reject(new Error(`${cmd}: no answer within ${timeoutMs} ms`))
    }, timeoutMs)
    calls.set(rpc, {
      resolve: (v) => { clearTimeout(timer); resolve(v as T) },
      reject: (e) => { clearTimeout(timer); reject(e) }
    })
    // With a callback, a child already gone fails this call instead of emitting an 'error' that kills
    // the orchestrator past its `finally` blocks (leaving PostgreSQL and Redis running).
    child.send({ rpc, cmd, args } satisfies Request, (err) => {
      if (err === null) return
      const pendingCall = calls.get(rpc)
      calls.delete(rpc)
      pendingCall?.reject(err)
    })
  })
}
