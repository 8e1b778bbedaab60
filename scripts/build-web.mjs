// Builds the browser side ahead of time (SPEC §13: no build step at run time): the SDK's browser bundle,
// the demo on top of it, and the console, into public/ (ignored by git). `make build`, and `make dev`,
// `make test` and `make demo` when public/ is missing or older than its sources.
import { build } from 'esbuild'
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const out = `${root}public/`
const common = { bundle: true, format: 'esm', platform: 'browser', target: 'es2022', minify: true, sourcemap: false, legalComments: 'none', logLevel: 'warning' }

await rm(out, { recursive: true, force: true })
await mkdir(`${out}sdk`, { recursive: true })
await build({ ...common, entryPoints: [`${root}src/sdk/index.ts`], outfile: `${out}sdk/spark-sdk.js` })
// The demo imports the SDK from its own bundle, as any page would: it runs on what users get.
const sdkAsBundle = { name: 'sdk-as-bundle', setup: (b) => { b.onResolve({ filter: /src\/sdk\/index\.js$/ }, () => ({ path: '../sdk/spark-sdk.js', external: true })) } }
await build({ ...common, entryPoints: [`${root}web/demo/demo.ts`], outfile: `${out}demo/demo.js`, plugins: [sdkAsBundle] })
await build({ ...common, entryPoints: [`${root}web/console/console.ts`], outfile: `${out}console/console.js`, plugins: [sdkAsBundle] })
for (const file of ['style.css', 'demo/index.html', 'console/index.html']) await copyFile(`${root}web/${file}`, `${out}${file}`)

const sdk = await readFile(`${out}sdk/spark-sdk.js`)
// What a first visit to /console/ downloads: the page, its script, the stylesheet and the SDK bundle (gzipped as a proxy would send them).
const consoleFiles = await Promise.all(['console/index.html', 'console/console.js', 'style.css', 'sdk/spark-sdk.js'].map(async (file) => await readFile(`${out}${file}`)))
const sizes = {
  sdkBytes: sdk.length,
  sdkGzipBytes: gzipSync(sdk).length,
  consoleFirstLoadBytes: consoleFiles.reduce((sum, file) => sum + file.length, 0),
  consoleFirstLoadGzipBytes: consoleFiles.reduce((sum, file) => sum + gzipSync(file).length, 0)
}
await writeFile(`${out}sizes.json`, JSON.stringify(sizes) + '\n')
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`
process.stderr.write(`public/: SDK bundle ${kib(sizes.sdkBytes)} minified, ${kib(sizes.sdkGzipBytes)} gzipped; console first load ${kib(sizes.consoleFirstLoadBytes)} (${kib(sizes.consoleFirstLoadGzipBytes)} gzipped)\n`)
