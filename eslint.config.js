// neostandard: the Fastify ecosystem's style (no semicolons, space before
// function parens), which the tree is already written in; `make lint` runs it.
import neostandard from 'neostandard'

/**
 * The layers of src/ (issue 13): a folder may import only what its regex does
 * not match. Static imports and re-exports, `import type` included, go through
 * no-restricted-imports; `import('...')` expressions and types through
 * no-restricted-syntax (esquery regexes cannot hold a slash, hence \x2F).
 */
function layer (files, regex, message) {
  const selector = regex.source.replaceAll('\\/', '/').replaceAll('/', '\\x2F')
  return {
    files,
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: [{ regex: regex.source, message }] }],
      'no-restricted-syntax': ['error',
        { selector: `ImportExpression > Literal.source[value=/${selector}/]`, message },
        { selector: `TSImportType Literal[value=/${selector}/]`, message }
      ]
    }
  }
}

const layers = [
  layer(['src/protocol/**/*.ts'], /./, 'src/protocol/ is the bottom layer, shared with the SDK: it imports nothing, not even its own files.'),
  layer(['src/sdk/**/*.ts'], /^(?!(\.\/[\w-][\w.-]*|\.\.\/protocol\/[\w-][\w.-]*|socket\.io-client)$)/, 'The SDK imports only its own files, ../protocol/* and socket.io-client.'),
  layer(['src/routes/**/*.ts'], /^(\.\.\/)+sockets(\/|$)/, 'routes/ imports nothing from sockets/: shared rules live in plugins/ decorators.'),
  layer(['src/plugins/**/*.ts'], /^(\.\.\/)+(sockets|routes)(\/|$)/, 'plugins/ imports nothing from sockets/ or routes/: they adapt what plugins decorate.')
]

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
  },
  ...layers
]
