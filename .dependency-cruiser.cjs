/** Layer rules of docs/ARCHITECTURE.md (issue 17). `npm run deps` runs this; `npm test` runs `npm run deps`. */
const IO_MODULES = '^(node:)?(dgram|fs|fs/promises|child_process|worker_threads|http|https|http2|dns|cluster|readline|tty|inspector)$';
/** `^src/` followed by none of these (folders, or top-level file stems). */
const notIn = (...allowed) => `^src/(?!(${allowed.join('|')})(/|\\.ts$))`;

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'No file cycles (type-only imports count).', from: {}, to: { circular: true } },
    {
      name: 'product-self-contained',
      severity: 'error',
      comment: 'src/ never imports the harness, tests, the bench or examples.',
      from: { path: '^src/' },
      to: { path: '^(harness|test|bench|examples)/' },
    },
    { name: 'tooling-not-tests', severity: 'error', from: { path: '^(harness|bench|examples)/' }, to: { path: '^test/' } },
    { name: 'examples-use-public-entries', severity: 'error', from: { path: '^examples/' }, to: { path: '^src/', pathNot: '^src/(index|tpo/index)\\.ts$' } },

    { name: 'leaves', severity: 'error', from: { path: '^src/(errors|events)\\.ts$' }, to: { path: '^src/' } },
    { name: 'wire-is-pure', severity: 'error', from: { path: '^src/wire/' }, to: { path: notIn('wire', 'errors', 'events') } },
    { name: 'policy-is-pure', severity: 'error', from: { path: '^src/policy/' }, to: { path: notIn('policy', 'wire', 'errors') } },
    {
      name: 'pure-layers-do-no-io',
      severity: 'error',
      comment: 'node:net stays allowed for isIP/BlockList; ESLint restricts its import names (C.4).',
      from: { path: '^src/(wire|policy|tpo/protocol)/' },
      to: { dependencyTypes: ['core'], path: IO_MODULES },
    },
    { name: 'sys-is-the-bottom', severity: 'error', from: { path: '^src/sys/' }, to: { path: notIn('sys', 'wire', 'errors') } },
    {
      name: 'ffi-fence',
      severity: 'error',
      comment: 'libc() only inside src/sys; harness, bench and tests may call it.',
      from: { path: '^src/', pathNot: '^src/sys/' },
      to: { path: '^src/sys/ffi\\.ts$' },
    },
    { name: 'koffi-only-in-ffi', severity: 'error', from: { pathNot: '^src/sys/ffi\\.ts$' }, to: { path: '(^|/)node_modules/koffi/' } },
    { name: 'fs-is-a-leaf', severity: 'error', from: { path: '^src/fs/' }, to: { path: notIn('fs', 'errors') } },
    { name: 'worker-module', severity: 'error', from: { path: '^src/worker/' }, to: { path: notIn('worker', 'sys', 'wire', 'errors', 'events') } },
    {
      name: 'cluster-store',
      severity: 'error',
      comment: 'The cluster layer (issue 21): store contract, etcd client, plan and agent; the daemon (src/server) drives it, it never imports the daemon.',
      from: { path: '^src/cluster/' },
      to: { path: notIn('cluster', 'policy', 'wire', 'errors', 'events') },
    },
    { name: 'etcd3-only-in-etcd-store', severity: 'error', from: { pathNot: '^src/cluster/etcd-store\\.ts$' }, to: { path: '(^|/)node_modules/etcd3/' } },
    { name: 'media-is-low', severity: 'error', from: { path: '^src/media/' }, to: { path: notIn('media', 'wire', 'errors') } },

    {
      name: 'dataplane-common',
      severity: 'error',
      from: { path: '^src/dataplane/common/' },
      to: { path: notIn('dataplane/common', 'policy', 'sys', 'wire', 'errors', 'events') },
    },
    {
      name: 'tiers-are-independent',
      severity: 'error',
      comment: 'A tier imports no other tier (kernel → batched: the companion).',
      from: { path: '^src/dataplane/(portable|batched)/' },
      to: { path: '^src/dataplane/(portable|batched|kernel)/', pathNot: '^src/dataplane/$1/' },
    },
    { name: 'kernel-only-needs-batched', severity: 'error', from: { path: '^src/dataplane/kernel/' }, to: { path: '^src/dataplane/portable/' } },
    {
      name: 'tiers-below-registry',
      severity: 'error',
      from: { path: '^src/dataplane/(common|portable|batched|kernel)/' },
      to: { path: '^src/dataplane/tiers\\.ts$' },
    },
    {
      name: 'engines-below-control',
      severity: 'error',
      from: { path: '^src/(dataplane|sender|media|worker)/' },
      to: { path: '^src/(control|cli|server|tpo)/|^src/index\\.ts$' },
    },
    { name: 'sender-uses-common-only', severity: 'error', from: { path: '^src/sender/' }, to: { path: '^src/dataplane/(?!common/)' } },
    {
      name: 'control-goes-through-tiers',
      severity: 'error',
      comment: 'Sluice reaches the kernel only through tiers and engines; it watches streams with src/media (pure) through its monitor taps.',
      from: { path: '^src/control/' },
      to: { path: '^src/(sys|worker|tpo|cli|server)/|^src/dataplane/(portable|batched|kernel)/' },
    },

    {
      name: 'tpo-protocol-has-no-io',
      severity: 'error',
      comment: 'sys/aead.ts is computation (ChaCha20-Poly1305 through libcrypto), not I/O; it lives in sys because it binds through koffi.',
      from: { path: '^src/tpo/protocol/' },
      to: { path: notIn('tpo/protocol', 'wire', 'errors', 'events'), pathNot: '^src/sys/aead\\.ts$' },
    },
    { name: 'tpo-io', severity: 'error', from: { path: '^src/tpo/io/' }, to: { path: notIn('tpo/io', 'worker', 'sys', 'wire', 'errors', 'events') } },
    { name: 'tpo-config', severity: 'error', from: { path: '^src/tpo/config/' }, to: { path: notIn('tpo/config', 'policy', 'fs', 'wire', 'errors') } },
    {
      name: 'tpo-link',
      severity: 'error',
      from: { path: '^src/tpo/link/' },
      to: { path: notIn('tpo/link', 'tpo/protocol', 'tpo/io', 'wire', 'errors', 'events') },
    },
    {
      name: 'tpo-intercept',
      severity: 'error',
      from: { path: '^src/tpo/intercept/' },
      to: { path: notIn('tpo/intercept', 'tpo/config', 'worker', 'sys', 'policy', 'wire', 'errors', 'events') },
    },
    {
      name: 'tpo-gateway-below-facade',
      severity: 'error',
      from: { path: '^src/tpo/gateway/' },
      to: { path: '^src/tpo/[^/]+\\.ts$|^src/(server|control|cli|dataplane|sender|media|worker)/' },
    },
    { name: 'relay-and-tpo-apart', severity: 'error', from: { path: '^src/(dataplane|sender|control)/' }, to: { path: '^src/tpo/' } },
    {
      name: 'server-uses-public-entries',
      severity: 'error',
      comment: 'The daemon (sluice serve) drives relays and gateways through the library entries, like any application.',
      from: { path: '^src/server/' },
      to: { path: notIn('server', 'index', 'tpo/index', 'policy', 'fs', 'wire', 'errors', 'events') },
    },
    { name: 'only-cli-imports-server', severity: 'error', from: { path: '^src/(?!cli/|server/)' }, to: { path: '^src/server/' } },
    { name: 'only-cli-imports-cli', severity: 'error', from: { path: '^src/(?!cli/)' }, to: { path: '^src/cli/' } },

    {
      name: 'no-orphans',
      severity: 'error',
      comment: 'Dead files (worker entries are loaded by URL, not imported).',
      from: {
        orphan: true,
        pathNot: [
          '\\.d\\.ts$',
          '^src/(index|tpo/index)\\.ts$',
          '^src/cli/main\\.ts$',
          '(^|/)(worker|send-worker|batched-port-worker|udp-worker|ip-emulator-worker)\\.ts$',
          '^(test|bench|examples)/',
          '^harness/bin/',
        ],
      },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules|bench/results)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default', 'types'], extensions: ['.ts', '.js', '.mjs'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
