import t from 'tap'
import fc from 'fast-check'
import { jsonShapeProblem } from '../../src/protocol/json-shape.js'

/** The depth of a JSON value, written the obvious (recursive) way, as the reference. */
function depthOf (value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0
  const children = Array.isArray(value) ? value : Object.values(value)
  return 1 + children.reduce<number>((max, child) => Math.max(max, depthOf(child)), 0)
}

const nested = (levels: number, open = '[', close = ']'): unknown => JSON.parse(open.repeat(levels) + close.repeat(levels))

t.test('depth is refused exactly past the limit, as a recursive count would say', async (t) => {
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 12 }), fc.integer({ min: 1, max: 12 }), (value, max) => {
    return (jsonShapeProblem(value, max) === 'depth') === (depthOf(value) > max)
  }), { numRuns: 2000, seed: 12 })
  t.equal(jsonShapeProblem(nested(32), 32), undefined, '32 levels pass a limit of 32')
  t.equal(jsonShapeProblem(nested(33), 32), 'depth', '33 levels do not')
  t.equal(jsonShapeProblem('scalar', 1), undefined)
  t.equal(jsonShapeProblem({ a: { b: 1 } }, 2), undefined)
  t.equal(jsonShapeProblem({ a: { b: {} } }, 2), 'depth')
})

t.test('a value nested far deeper than any stack is walked without recursion', async (t) => {
  const deep = nested(200_000)
  t.equal(jsonShapeProblem(deep, 32), 'depth')
  t.throws(() => JSON.stringify(deep), RangeError, 'what the walk protects: a recursive encoder overflows the stack on it')
  const wide = Array.from({ length: 100_000 }, (_, i) => ({ i, tags: [i] }))
  t.equal(jsonShapeProblem(wide, 3), undefined, 'a wide value of small depth passes')
})

t.test('binary data and prototype keys are named', async (t) => {
  t.equal(jsonShapeProblem({ data: [Buffer.from('x')] }, 32), 'binary')
  t.equal(jsonShapeProblem([new ArrayBuffer(4)], 32), 'binary')
  t.equal(jsonShapeProblem(JSON.parse('{"a":{"__proto__":{"admin":true}}}'), 32), undefined, 'prototype keys are allowed unless asked')
  t.equal(jsonShapeProblem(JSON.parse('{"a":{"__proto__":{"admin":true}}}'), 32, true), 'prototype')
  t.equal(jsonShapeProblem(JSON.parse('{"constructor":{"prototype":{"x":1}}}'), 32, true), 'prototype')
  t.equal(jsonShapeProblem(JSON.parse('{"constructor":"a name"}'), 32, true), undefined, 'a constructor key holding no prototype is data')
})
