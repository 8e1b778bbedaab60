// Times `can` on the SPEC §3 example policy: it runs for every Socket.IO packet.
// Run: npx tsx bench/policy.ts
import { can, compilePolicy } from '../src/policies/engine.js'
import type { PolicyAction, PolicyDocument, PolicySubject } from '../src/policies/types.js'

const chatUser: PolicyDocument = {
  name: 'chat-user',
  rules: [
    { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'],
      events: ['message', 'typing'], rooms: ['lobby', 'room:*', 'user:${sub}'] },
    { effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'],
      rooms: ['user:${sub}'] },
    { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly*'] },
  ],
}

const policy = compilePolicy(chatUser)
const subject: PolicySubject = { sub: 'user-42', keyId: 'key-1' }

// A mix of allowed and refused checks, built up front so the loop only calls `can`.
type Query = [PolicyAction, string, string | undefined, string | undefined]
const queries: Query[] = [
  ['publish', '/chat', 'room:42', 'message'],
  ['publish', '/chat', 'room:readonly-news', 'message'],
  ['publish', '/chat', 'user:user-42', 'typing'],
  ['publish', '/chat', 'lobby', 'delete'],
  ['subscribe', '/chat', 'room:7', undefined],
  ['subscribe', '/notification', 'user:user-42', undefined],
  ['subscribe', '/notification', 'user:other', undefined],
  ['connect', '/chat', undefined, undefined],
]

function run(n: number): number {
  let allowed = 0
  for (let i = 0; i < n; i++) {
    const q = queries[i & 7]!
    if (can(policy, subject, q[0], q[1], q[2], q[3])) allowed++
  }
  return allowed
}

const N = 1_000_000
run(N) // warm up the JIT
const start = process.hrtime.bigint()
const allowed = run(N)
const ns = Number(process.hrtime.bigint() - start)
console.log(`can(): ${N.toLocaleString('en')} calls in ${(ns / 1e6).toFixed(1)} ms, ` +
  `${(ns / N).toFixed(1)} ns/call (${allowed} allowed)`)
