/**
 * Lint rules (issue 17): typescript-eslint's recommended and stylistic sets
 * with type information, plus the project's own rules: #private only, lines
 * up to 160 characters, product files up to 400 lines unless the top of the
 * file says why, koffi only in src/sys/ffi.ts, process signals and exit only
 * in src/cli, and pure layers that use node:net only to parse addresses.
 * `npm test` runs it with zero warnings allowed. Layer imports are checked by
 * dependency-cruiser (.dependency-cruiser.cjs); formatting by Prettier.
 */
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

const noPrivate = {
  selector:
    "PropertyDefinition[accessibility='private'], MethodDefinition[accessibility='private'][kind!='constructor'], TSParameterProperty[accessibility='private']",
  message: 'Use #private (issue 17, item 10).',
};
const noKoffi = { selector: "Literal[value='koffi']", message: 'Only src/sys/ffi.ts loads koffi.' };
const processOnlyInCli = ['on', 'once', 'off', 'kill', 'exit', 'addListener', 'prependListener'].map((property) => ({
  object: 'process',
  property,
  message: 'Only src/cli touches process signals and exit.',
}));

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/', 'bench/tmp/', 'bpf/'] },
  ...tseslint.configs.recommended,
  ...tseslint.configs.stylistic,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's test()/describe() return promises the runner owns.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    rules: {
      // `() => {}` is how this code says "ignore this callback/error" on purpose.
      '@typescript-eslint/no-empty-function': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'max-len': ['error', { code: 160, ignoreUrls: true, ignoreRegExpLiterals: true, ignoreStrings: true, ignoreTemplateLiterals: true }],
      'no-restricted-syntax': ['error', noPrivate],
      // Hot loops over typed arrays index on purpose (CRCs, checksums, packet walks).
      '@typescript-eslint/prefer-for-of': 'off',
      // A variable a callback reads before its one assignment (Sluice.open) stays `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // Tests read JSON lines from the processes they run: untyped by nature.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // Over 400 lines: `/* eslint-disable max-lines -- <reason> */` on line 1 is the "reason at its top".
      'max-lines': ['error', { max: 400 }],
      'no-restricted-syntax': ['error', noPrivate, noKoffi],
    },
  },
  { files: ['src/sys/ffi.ts'], rules: { 'no-restricted-syntax': ['error', noPrivate] } },
  // The harness and the bench are read like the product: the same size limit and the same way to state a reason.
  { files: ['harness/**/*.ts', 'bench/**/*.ts', 'examples/**/*.ts'], rules: { 'max-lines': ['error', { max: 400 }] } },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**'],
    rules: { 'no-restricted-properties': ['error', ...processOnlyInCli] },
  },
  {
    files: ['src/wire/**/*.ts', 'src/policy/**/*.ts', 'src/tpo/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'node:net', allowImportNames: ['isIP', 'isIPv4', 'isIPv6', 'BlockList'], message: 'Pure layers use node:net only to parse addresses.' },
          ],
        },
      ],
    },
  },
  prettier,
);
