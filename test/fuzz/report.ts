import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Frame, FuzzInput } from './arbitraries.js'
import type { CampaignResult, Finding } from './campaign.js'

/** Long runs of one unit (`[` 6000 times) written as `‹[×6000›`, then cut to `max` characters. */
export function compact (text: string, max = 300): string {
  const folded = text.replace(/([\s\S]{1,6}?)\1{7,}/g, (run: string, unit: string) => `‹${unit}×${run.length / unit.length}›`)
  return folded.length <= max ? folded : `${folded.slice(0, max)}… (+${folded.length - max} chars)`
}

/** The command that replays one path of a result's seed (same batches: same seed, batch bound and stores). */
export function replayCommand (result: Pick<CampaignResult, 'seed' | 'maxBatch' | 'stores'>, path: string): string {
  return `FUZZ_SEED=${result.seed} FUZZ_BATCH=${result.maxBatch} FUZZ_PATH=${path}${result.stores !== undefined && result.stores !== 'embedded' ? ` FUZZ_STORES=${result.stores}` : ''} make fuzz`
}

const frameText = (frame: Frame): string => 'text' in frame
  ? JSON.stringify(compact(frame.text))
  : `${frame.asText === true ? 'text frame of bytes' : 'binary'} ${compact(Buffer.from(frame.bytes).toString('hex'), 120)} (${frame.bytes.length} bytes)`

/** One line per frame, request or body: what a reader needs to see the input. */
export function describeInput (input: FuzzInput): string {
  switch (input.kind) {
    case 'socket': return input.frames.map(frameText).join('\n    then ')
    case 'handshake': return JSON.stringify(compact(input.frame))
    case 'transport': return `GET /socket.io/?${compact(input.query, 200)} headers ${compact(JSON.stringify(input.headers), 200)}`
    case 'polling': return `POST body ${typeof input.body === 'string' ? JSON.stringify(compact(input.body)) : frameText({ bytes: input.body })} content-type ${String(input.contentType)}`
    case 'rest': return `${input.method} ${compact(input.path, 120)} headers ${compact(JSON.stringify(input.headers), 200)} body ${typeof input.body === 'string' ? JSON.stringify(compact(input.body)) : frameText({ bytes: input.body })} (${input.framing})`
  }
}

/** The exact input, as JSON (bytes as base64), to replay it by hand. */
export function exactInput (input: FuzzInput): unknown {
  return JSON.parse(JSON.stringify(input, (_key, value: unknown) => value instanceof Uint8Array ? { base64: Buffer.from(value).toString('base64') } : value))
}

const STORES: Record<string, string> = {
  embedded: 'the embedded stores (PGlite in memory, in-process rate limits and adapter)',
  postgres: 'PostgreSQL (TEST_DATABASE_URL) with the in-process stores and adapter',
  servers: 'PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL), Redis adapter'
}

const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MB`

function findingSection (finding: Finding, result: CampaignResult): string[] {
  const lines = [`### ${finding.kind}: ${finding.signature}`, '', `- seen ${finding.count} time(s); ${finding.message.split('\n')[0]}`]
  if (finding.path !== undefined) lines.push(`- replay: \`${replayCommand(result, finding.path)}\``)
  if (finding.counterexample !== undefined) {
    lines.push(`- shrunk to ${finding.counterexample.length} input(s):`)
    for (const input of finding.counterexample) lines.push(`  - ${input.tag}: ${describeInput(input)}`)
  }
  if (finding.message.includes('\n')) lines.push('', '```', ...finding.message.split('\n').slice(0, 12), '```')
  return [...lines, '']
}

/** The results as Markdown: figures, findings with their shrunk inputs, counts per input kind. */
export function resultMarkdown (result: CampaignResult, title: string): string {
  const seconds = result.durationMs / 1000
  const lines = [
    `# ${title}`,
    '',
    `- seed ${result.seed}; ${result.inputs} inputs in ${result.batches} batches, ${seconds.toFixed(0)} s (${Math.round(result.inputs / seconds)} inputs/s); ${result.shrinkInputs} more while shrinking`,
    `- gateway in-process on ${STORES[result.stores ?? ''] ?? result.stores ?? '?'}; connections opened by the fuzzer: ${Object.entries(result.sessions).map(([k, n]) => `${k} ${n}`).join(', ')}`,
    `- bystander round trips: ${result.roundTrips.count}, mean ${result.roundTrips.meanMs.toFixed(1)} ms, max ${result.roundTrips.maxMs.toFixed(0)} ms`,
    `- heap after gc: baseline ${mb(result.memory.baselineBytes)} (taken after ${(result.memory.warmUpMs / 1000).toFixed(0)} s), last ${mb(result.memory.lastBytes)}, peak ${mb(result.memory.peakBytes)}; bound +${mb(result.memory.boundBytes)}; ${result.memory.checks} checks, ${result.memory.settles} of them over the bound until the heap came back`,
    `- findings: ${result.findings.length === 0 ? 'none' : result.findings.length}`,
    '',
    '## Findings',
    '',
    ...(result.findings.length === 0 ? ['None: no crash, hang, 5xx, error log line, echoing refusal, bystander failure or memory growth past the bound.', ''] : result.findings.flatMap((finding) => findingSection(finding, result))),
    '## Inputs per kind, and what the gateway did with them',
    '',
    '| input | sent | outcomes |',
    '|---|---:|---|',
    ...Object.entries(result.counts).map(([tag, outcomes]) => {
      const total = Object.values(outcomes).reduce((a, b) => a + b, 0)
      return `| ${tag} | ${total} | ${Object.entries(outcomes).slice(0, 8).map(([o, n]) => `${o} ${n}`).join(', ')} |`
    }),
    ''
  ]
  return lines.join('\n')
}

/** Writes `latest.md` and `latest.json` under `dir`. */
export async function writeResults (dir: string, result: CampaignResult, title: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  const json = { ...result, findings: result.findings.map((f) => ({ ...f, counterexample: f.counterexample?.map(exactInput) })) }
  await writeFile(join(dir, 'latest.json'), JSON.stringify(json, null, 2) + '\n')
  await writeFile(join(dir, 'latest.md'), resultMarkdown(result, title))
}
