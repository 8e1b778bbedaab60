import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface Instance {
  url: string
  child: ChildProcess
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>
}

/**
 * Starts one real gateway process (`node --import tsx src/server.ts`) on a
 * free port and resolves when it listens. The environment is the test's.
 */
export async function startInstance (env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    // A guard against a hang only: three starting at once took 21-25 s on a loaded 2-core machine.
    const timer = setTimeout(() => reject(new Error(`instance did not start within 120 s: ${stderr}`)), 120_000)
    lines.on('line', (line) => {
      const match = /listening on (https?:\/\/\S+)/.exec(line)
      if (match !== null) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`instance exited with ${code}: ${stderr}`)) })
  })
  return { url, child, exited }
}

/** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopInstance (instance: Instance, graceMs = 12_000): Promise<number | null> {
  if (instance.child.exitCode !== null || instance.child.signalCode !== null) return instance.child.exitCode
  instance.child.kill('SIGTERM')
  const timer = setTimeout(() => instance.child.kill('SIGKILL'), graceMs)
  const code = await instance.exited
  clearTimeout(timer)
  return code
}
