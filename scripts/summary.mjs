#!/usr/bin/env node
// Pass a raw TAP stream (stdin) through to stdout unchanged and end it with
// one line: "N passed, N failed" (plus ", N skipped" when any were skipped).
//
// Counting rule: every test point ("ok" / "not ok" line) at ANY nesting level
// counts, i.e. leaf assertions and the subtest/file results that wrap them.
// A "# SKIP" or "# TODO" directive counts as skipped (neither passed nor
// failed). Every "Bail out!" counts as one failure. Lines inside YAML
// diagnostic blocks (---/...) are never counted.
// If the top-level plan ("1..N" at column 0) is missing or does not match the
// number of top-level test points, that counts as one more failure (the run
// was cut short).
//
// Exit status: 0 when failed == 0 and passed >= 1, else 1.
import { createInterface } from 'node:readline'

let passed = 0
let failed = 0
let skipped = 0
let topLevelPoints = 0
let topLevelPlan = null // number | null
let topLevelSkipAll = false
let yamlIndent = null // indentation string of the open YAML block, or null

const POINT = /^(\s*)(not )?ok\b(.*)$/
const PLAN = /^(\s*)1\.\.(\d+)\b(.*)$/
const DIRECTIVE = /(?:^|[^\\])#\s*(skip|todo)\b/i
const BAIL = /^\s*Bail out!/

function onLine (raw) {
  const line = raw.replace(/\r$/, '')
  if (yamlIndent !== null) {
    const indent = /^\s*/.exec(line)[0]
    if (line.trim() === '...' && indent.length <= yamlIndent.length) yamlIndent = null
    return
  }
  const yamlStart = /^(\s*)---\s*$/.exec(line)
  if (yamlStart) {
    yamlIndent = yamlStart[1]
    return
  }
  if (BAIL.test(line)) {
    failed++
    return
  }
  const plan = PLAN.exec(line)
  if (plan) {
    if (plan[1] === '') {
      topLevelPlan = Number(plan[2])
      if (topLevelPlan === 0 && /#\s*skip/i.test(plan[3])) topLevelSkipAll = true
    }
    return
  }
  const m = POINT.exec(line)
  if (!m) return
  if (m[1] === '') topLevelPoints++
  if (DIRECTIVE.test(m[3])) skipped++
  else if (m[2]) failed++
  else passed++
}

let endsWithNewline = true
process.stdin.on('data', (chunk) => {
  if (chunk.length > 0) endsWithNewline = chunk[chunk.length - 1] === 0x0a
  process.stdout.write(chunk)
})
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', onLine)
rl.on('close', () => {
  if (!endsWithNewline) process.stdout.write('\n')
  if (topLevelPlan === null) {
    failed++
    process.stdout.write('# summary: no top-level TAP plan (run did not finish?)\n')
  } else if (topLevelPlan !== topLevelPoints && !topLevelSkipAll) {
    failed++
    process.stdout.write(
      `# summary: top-level plan 1..${topLevelPlan} but ${topLevelPoints} test points\n`
    )
  }
  let out = `${passed} passed, ${failed} failed`
  if (skipped > 0) out += `, ${skipped} skipped`
  process.stdout.write(out + '\n', () => {
    process.exitCode = failed === 0 && passed > 0 ? 0 : 1
  })
})
