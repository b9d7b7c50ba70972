import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The layers of src/ and which way they import (docs/architecture.md draws them). Each zone is one
 * rule: the files it covers may not import what its patterns name. A file falls in one zone only,
 * so no zone's rule replaces another's.
 */
const layer = (...folders) => `(^|/)(${folders.join('|')})/`;
const zone = (name, files, forbidden, options = {}) => ({
  name: `weir/layers: ${name}`,
  files,
  ...(options.ignores === undefined ? {} : { ignores: options.ignores }),
  rules: {
    'no-restricted-imports': ['error', { patterns: forbidden.map(([regex, message]) => ({ regex, message: `${name}: ${message}` })) }],
  },
});
const ABOVE_MODEL = 'graph|context|run|durability|human|executors|storage|results|testing|http|cli|mcp|otel';

const zones = [
  zone('util is the ground floor', ['src/util/**'], [[layer(...ABOVE_MODEL.split('|'), 'model'), 'util may import only errors']]),
  zone('the model and errors are at the bottom', ['src/model/**', 'src/errors/**'], [[layer(...ABOVE_MODEL.split('|')), 'the model and errors import only each other and util']]),
  zone('the graph is above the model', ['src/graph/**'], [[layer('context', 'run', 'durability', 'human', 'executors', 'storage', 'results', 'testing', 'http'), 'the graph imports only the model, errors and util']]),
  zone('storage is below the run', ['src/storage/**'], [[layer('graph', 'context', 'run', 'durability', 'human', 'executors', 'results', 'testing', 'http'), 'storage (codec, key-value backends, journal stores) knows nothing above it']]),
  zone(
    'executors never import storage or the context',
    ['src/executors/**'],
    [
      [layer('storage', 'context', 'run', 'durability', 'results', 'graph', 'testing', 'http'), 'an executor runs a processor; it knows nothing of runs, stores or contexts'],
      ['(^|/)human/(?!ask\\.js$)', 'an executor may use only the shared ask (human/ask.js)'],
    ],
    { ignores: ['src/executors/worker/**'] },
  ),
  zone('worker-side code is apart from the main-thread pools', ['src/executors/worker/**'], [
    [layer('storage', 'context', 'run', 'durability', 'results', 'graph', 'testing', 'http'), 'code that runs in a worker knows nothing of runs, stores or contexts'],
    ['(^|/)human/(?!ask\\.js$)', 'a worker may use only the shared ask (human/ask.js)'],
    ['^\\.\\./(thread|process|fork-pool|remote|locate|entry-file|pool-options|inline)\\.js$', 'a worker does not import the main-thread pools'],
  ]),
  zone('a run is below its context', ['src/run/**'], [
    [layer('context', 'durability', 'results', 'testing', 'http'), 'a run reports to its context through RunKeeper only'],
    ['(^|/)human/(?!(ask|waits)\\.js$)', 'a run uses the shared ask and its own waits, not the context-level answers'],
  ]),
  zone('the shared ask is below the run', ['src/human/ask.ts'], [[layer('run', 'durability', 'context', 'storage', 'results', 'graph'), 'the ask runs on the main thread and in workers alike']]),
  zone('a run\'s waits are part of the run', ['src/human/waits.ts'], [[layer('context', 'durability', 'results', 'testing', 'http'), 'a run\'s waits know nothing of the context']]),
  zone('durability and answers are parts of the context, under its facade', ['src/durability/**', 'src/human/answers.ts'], [
    ['(^|/)context/flow-context\\.js$', 'the FlowContext facade sits on its parts, never under them'],
    [layer('results', 'testing', 'http'), 'context parts reach the store through ContextCore'],
  ]),
  zone('the context\'s own parts are under its facade', ['src/context/**'], [['(^|/)flow-context\\.js$', 'the FlowContext facade sits on its parts, never under them'], [layer('testing', 'http'), 'the test kit and the HTTP adapter sit on the context']], {
    ignores: ['src/context/flow-context.ts'],
  }),
  zone('the main entry never loads the subpaths', ['src/index.ts', 'src/context/flow-context.ts'], [[layer('testing', 'http'), 'weir/testing and weir/http are subpaths of their own, never loaded by the main entry']]),
  zone('the weir command is an adapter over the public API', ['src/cli/**'], [
    [layer('graph', 'context', 'run', 'durability', 'human', 'executors', 'storage', 'results', 'testing'), 'the weir command uses the public entry (../index.js), weir/http, the model, errors and util'],
  ]),
  zone('weir/otel is an adapter over the public API', ['src/otel/**'], [
    [layer('graph', 'context', 'run', 'durability', 'human', 'executors', 'storage', 'results', 'testing', 'cli', 'http', 'mcp'), 'weir/otel reads the public entry (../index.js) and its events only'],
  ]),
  zone('weir/mcp is an adapter over the public API', ['src/mcp/**'], [
    [layer('graph', 'context', 'run', 'durability', 'human', 'executors', 'storage', 'results', 'testing', 'cli'), 'weir/mcp uses the public entry (../index.js), the HTTP routes\' helpers, the model, errors and util'],
  ]),
  zone('weir/http is an adapter over the public API', ['src/http/**'], [
    [layer('graph', 'context', 'run', 'durability', 'human', 'executors', 'storage', 'results', 'testing'), 'weir/http uses the FlowContext through the public entry (../index.js), the model, errors and util'],
  ]),
  zone('results sit on storage', ['src/results/**'], [[layer('context', 'run', 'durability', 'human', 'executors', 'graph', 'testing', 'http'), 'ResultsManager is the user\'s key-value store over storage']]),
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.weir/**', 'coverage/**', '*.config.js', '.ci/**', 'src/executors/worker/*.mjs'] },
  { ignores: ['src/storage/journal/sqlite/*.mjs'] },
  // Plain JavaScript that Node loads before any TypeScript can be: the benchmarks' module hooks.
  { ignores: ['bench/loader/*.mjs'] },
  // A plain Piscina worker of the tests: a worker thread loads JavaScript, and imports TypeScript through tsx itself.
  { ignores: ['test/executors/fixtures/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
  ...zones,
  {
    files: ['test/types/**'],
    rules: { '@typescript-eslint/unbound-method': 'off' },
  },
  {
    // node:test's test() returns a promise the runner itself awaits.
    files: ['examples/**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] }],
    },
  },
);
