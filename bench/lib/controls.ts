// What every server under test answers over IPC (bench/lib/server.ts and the
// classic reference in bench/reference/server.ts): CPU and event-loop use over
// a measured window, memory after a forced gc, socket counts, and the hooks a
// server fills in (settle, mint, its own extra commands).
import { performance } from 'node:perf_hooks'
import { writeHeapSnapshot } from 'node:v8'
import type { AddressInfo } from 'node:net'
import type { Server as HttpServer } from 'node:http'
import type { Server as SocketIOServer } from 'socket.io'
import { serve, type Handlers } from './rpc.js'
import { runQueueWaitUs } from './sched.js'

export function forceGc (): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('start the server with --expose-gc')
  // Twice: the first pass can leave objects that only die once their finalizers ran.
  gc()
  gc()
}

export interface ServerControls {
  kind: string
  http: HttpServer
  io: SocketIOServer
  close: () => Promise<void>
  /** Work deferred past a request or handshake (audit rows), done now so it falls inside the window. */
  settle?: () => Promise<void>
  /** Access tokens for subjects `subs` (null each where the server has no auth). */
  mint?: (subs: string[]) => Promise<Array<string | null>>
  /** Scenario-specific commands (e.g. the token scenario's keys). */
  extra?: Handlers
}

/** Answers the orchestrator's commands and tells it the server is ready on its port. */
export function serveControls (controls: ServerControls): void {
  const chat = controls.io.of('/chat')
  let window: { cpu: NodeJS.CpuUsage, at: bigint, elu: ReturnType<typeof performance.eventLoopUtilization>, waitUs: number } | undefined
  serve({
    ...controls.extra,
    /** Starts a measured window. `atUs` is CLOCK_MONOTONIC, the clock of --cpu-prof samples. */
    'window:start': () => {
      window = { cpu: process.cpuUsage(), at: process.hrtime.bigint(), elu: performance.eventLoopUtilization(), waitUs: runQueueWaitUs() }
      return { atUs: Number(window.at / 1000n) }
    },
    'window:stop': () => {
      if (window === undefined) throw new Error('window:stop without window:start')
      const cpu = process.cpuUsage(window.cpu)
      const now = process.hrtime.bigint()
      const elu = performance.eventLoopUtilization(window.elu)
      const result = {
        cpuUs: cpu.user + cpu.system,
        userUs: cpu.user,
        systemUs: cpu.system,
        elapsedUs: Number(now - window.at) / 1000,
        eventLoopUtilization: elu.utilization,
        runQueueWaitUs: runQueueWaitUs() - window.waitUs,
        startUs: Number(window.at / 1000n),
        stopUs: Number(now / 1000n),
        rss: process.memoryUsage.rss()
      }
      window = undefined
      return result
    },
    gc: () => { forceGc(); return process.memoryUsage() },
    memory: () => process.memoryUsage(),
    /** A heap snapshot, for looking into what a connection holds (diagnostics; not used by the scenarios). */
    heapSnapshot: (args: { file: string }) => { forceGc(); return writeHeapSnapshot(args.file) },
    /** Sockets connected to /chat. */
    sockets: () => chat.sockets.size,
    /** Engine.IO connections still open (a closed namespace socket's transport can linger a little). */
    connections: () => controls.io.engine.clientsCount,
    settle: async () => { await controls.settle?.() },
    mint: async (args: { subs: string[] }) => controls.mint === undefined ? args.subs.map(() => null) : await controls.mint(args.subs),
    close: async () => {
      await controls.close()
      // Exiting (rather than waiting for handles) lets --cpu-prof write its profile now.
      setImmediate(() => process.exit(0))
    }
  })
  process.send?.({ ready: true, port: (controls.http.address() as AddressInfo).port, pid: process.pid, kind: controls.kind })
}

/** The config overlay a scenario passed to this server (argv[3], JSON), e.g. a low token rate limit. */
export function configOverlay (): Record<string, string> {
  const raw = process.argv[3]
  return raw === undefined || raw === '' ? {} : JSON.parse(raw) as Record<string, string>
}
