import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { isolatedEnv } from '../helper.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/**
 * Runs test/support/start-and-close.ts; resolves with its output and whether it exited by itself in time.
 * What is timed is the exit after its `closed` line (a handle left open would keep it alive for good),
 * not the start: spawn to `closed` took 15-16 s, two at once on a loaded 2-core machine (this test up to 29 s).
 */
async function startAndClose (env: Record<string, string>): Promise<{ output: string, exitedAlone: boolean, code: number | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/start-and-close.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  let killed = false
  const kill = (): void => { killed = true; child.kill('SIGKILL') }
  const startGuard = setTimeout(kill, 150_000)
  let exitGuard: NodeJS.Timeout | undefined
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString()
    if (exitGuard === undefined && output.includes('closed\n')) exitGuard = setTimeout(kill, 10_000)
  })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(startGuard)
  clearTimeout(exitGuard)
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
