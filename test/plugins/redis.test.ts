import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { isolatedEnv } from '../helper.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Runs test/support/start-and-close.ts; resolves with its output and whether it exited by itself in time. */
async function startAndClose (env: Record<string, string>): Promise<{ output: string, exitedAlone: boolean, code: number | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/start-and-close.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  let killed = false
  const timer = setTimeout(() => { killed = true; child.kill('SIGKILL') }, 20_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(timer)
  return { output, exitedAlone: !killed, code }
}

t.test('an unreachable REDIS_URL fails the start and leaves nothing running', async (t) => {
  const env = await isolatedEnv(t, { REDIS_URL: 'redis://127.0.0.1:1' })
  const { output, exitedAlone, code } = await startAndClose(env)
  t.match(output, /^failed: .*\nclosed\n$/, 'the start fails, the close completes')
  t.ok(exitedAlone, 'the process then exits by itself: no client keeps reconnecting')
  t.equal(code, 0)
})

t.test('an unreachable DATABASE_URL fails the start and leaves nothing running', async (t) => {
  const env = await isolatedEnv(t)
  const { output, exitedAlone, code } = await startAndClose({ ...env, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' })
  t.match(output, /^failed: .*\nclosed\n$/)
  t.ok(exitedAlone, 'the process then exits by itself')
  t.equal(code, 0)
})
