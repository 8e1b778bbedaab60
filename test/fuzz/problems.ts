import type { FuzzInput } from './arbitraries.js'

// What the fuzzer reports, shared by its two threads (this module loads no arbitraries: the gateway's thread needs none).

/** What a batch can show that is wrong with the gateway. A close or a refusal is not among them. */
export type ProblemKind = 'crash' | 'hang' | 'bystander' | 'http-5xx' | 'error-log' | 'echo'

export interface Problem {
  kind: ProblemKind
  /** Equal for two occurrences of one bug: the campaign shrinks the first and counts the others. */
  signature: string
  message: string
  /** The input that showed it, when one input did (a hang, a 500); crashes and logs belong to the batch. */
  input?: FuzzInput
}

/** Where an error was thrown, without line numbers: one signature for one bug however it is reached. */
export function errorSignature (err: unknown): string {
  const error = err instanceof Error ? err : new Error(String(err))
  // The first frame in a file: native frames (`Array.isArray (<anonymous>)`) vary with where the stack ran out.
  const frame = (error.stack ?? '').split('\n').find((line) => /^\s+at .*\//.test(line)) ?? ''
  const where = frame.replace(/^\s+at /, '').replace(/\(?(?:file:\/\/)?[^ ]*\/(node_modules\/[^:)]+|src\/[^:)]+|test\/[^:)]+)(?::\d+)*\)?/, '($1)')
  return `${error.name}: ${error.message.slice(0, 80)} at ${where}`
}
