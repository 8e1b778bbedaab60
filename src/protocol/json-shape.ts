// Bounds on the shape of client JSON (SPEC §2 SOCKET_MAX_DEPTH), checked
// without recursion: socket.io-parser's hasBinary and JSON.stringify recurse
// over a packet's data, so nesting past a few thousand levels overflows the
// stack of whoever encodes it. No imports: shared by every transport.

/** What is wrong with a JSON value's shape, or undefined when it is acceptable. */
export type ShapeProblem = 'depth' | 'binary' | 'prototype'

/**
 * Walks `value` with an explicit stack and reports the first problem:
 * arrays/objects nested more than `maxDepth` deep, binary data (Buffers,
 * ArrayBuffers, typed arrays: packets carry JSON only), or, with
 * `forbidPrototypeKeys`, a `__proto__` key or a `constructor` holding a
 * `prototype` (prototype poisoning, refused as secure-json-parse does).
 * A scalar has depth 0; `[]` and `{}` have depth 1.
 */
export function jsonShapeProblem (value: unknown, maxDepth: number, forbidPrototypeKeys = false): ShapeProblem | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const stack: unknown[] = [value]
  const depths: number[] = [1]
  while (stack.length > 0) {
    const node = stack.pop() as object
    const depth = depths.pop() as number
    if (depth > maxDepth) return 'depth'
    if (ArrayBuffer.isView(node) || node instanceof ArrayBuffer) return 'binary'
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const child: unknown = node[i]
        if (typeof child === 'object' && child !== null) { stack.push(child); depths.push(depth + 1) }
      }
      continue
    }
    for (const key in node) {
      if (!Object.hasOwn(node, key)) continue
      const child: unknown = (node as Record<string, unknown>)[key]
      if (forbidPrototypeKeys && (key === '__proto__' || (key === 'constructor' && typeof child === 'object' && child !== null && Object.hasOwn(child, 'prototype')))) return 'prototype'
      if (typeof child === 'object' && child !== null) { stack.push(child); depths.push(depth + 1) }
    }
  }
  return undefined
}
