// Maps profile positions back to src/*.ts lines. Under tsx each file is
// compiled to one line (minified whitespace), so a --cpu-prof call frame only
// has a column; loading the same files through the same tsx loader gives the
// same output, whose source map Node keeps (module.findSourceMap). Compiled
// files (compiled by bench/tsconfig.build.json) carry their tsc source maps.
// Run as a child: node --enable-source-maps --import tsx source-positions.ts <positions.json>
// prints [{ url, line, column, originalLine }] (1-based originalLine, or null).
import { readFileSync } from 'node:fs'
import { findSourceMap } from 'node:module'

interface Position { url: string, line: number, column: number }

async function main (): Promise<void> {
  const positions = JSON.parse(readFileSync(process.argv[2], 'utf8')) as Position[]
  const urls = [...new Set(positions.map((p) => p.url))]
  for (const url of urls) await import(url).catch(() => {})
  const mapped = positions.map((p) => {
    const entry = findSourceMap(p.url)?.findEntry(p.line, p.column)
    const originalLine = entry !== undefined && 'originalLine' in entry ? entry.originalLine + 1 : null
    return { ...p, originalLine }
  })
  process.stdout.write(JSON.stringify(mapped))
}

main().then(() => { process.exit(0) }, (err: unknown) => {
  console.error(err)
  process.exit(1)
})
