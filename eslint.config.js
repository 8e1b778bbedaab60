// neostandard: the Fastify ecosystem's style (no semicolons, space before
// function parens), which the tree is already written in; `make lint` runs it.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', 'bench/results/**', 'fuzz-results/**', '.data*/**', 'scratch/**']
  }),
  {
    rules: {
      // Policy rules are written with literal `${sub}` placeholders (SPEC §4), in tests and benchmarks alike.
      'no-template-curly-in-string': 'off',
      // `void promise` as a statement marks a promise left unawaited on purpose (`void app.register(...)`).
      'no-void': ['error', { allowAsStatement: true }],
      // Polling loops wait on state that event callbacks change across the `await`, which the rule cannot see.
      'no-unmodified-loop-condition': 'off',
      // Long objects (env maps, parameters, rules) are packed several properties to a line, wrapped by width.
      '@stylistic/object-property-newline': 'off'
    }
  },
  {
    files: ['**/*.ts'],
    rules: {
      // The house rule: no `any` (or bare `Function`) without a disable comment that says why.
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unsafe-function-type': 'error'
    }
  }
]
