/**
 * Error classes and their stable codes (issue 17, item 6): every class
 * carries its code, the codes form one union listed once, isSluiceError
 * narrows, and the errors that were plain Errors (config, file, eBPF
 * object) are SluiceErrors now with their messages unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  SLUICE_ERROR_CODES,
  SluiceError,
  PolicyValidationError,
  InvalidArgumentError,
  ClosedError,
  NotSupportedError,
  ConflictError,
  EngineError,
  EngineFailedError,
  SyscallError,
  ConfigError,
  isSluiceError,
  type SluiceErrorCode,
} from '../../src/index.js';
import { WireError } from '../../src/wire/tpo/errors.js';
import { ControlSocketError } from '../../src/tpo/control-socket.js';
import { FileRefusedError, readRegularFile } from '../../src/fs/regular-file.js';
import { ElfError, parseBpfElf } from '../../src/wire/elf.js';
import { StoreError } from '../../src/cluster/store.js';
import { parseTpoConfigText, TpoConfigError } from '../../src/tpo/config/config.js';
import { compileInterceptTable, FlowTableError } from '../../src/tpo/config/intercept-rules.js';

test('every class carries its code, and every code has a class', () => {
  const samples: [SluiceError, SluiceErrorCode][] = [
    [new PolicyValidationError([{ path: 'to', message: 'bad' }]), 'SLUICE_ERR_INVALID_POLICY'],
    [new ConfigError('bad config'), 'SLUICE_ERR_INVALID_CONFIG'],
    [new InvalidArgumentError('bad'), 'SLUICE_ERR_INVALID_ARGUMENT'],
    [new ClosedError('Sluice'), 'SLUICE_ERR_CLOSED'],
    [new NotSupportedError('no', 'because'), 'SLUICE_ERR_NOT_SUPPORTED'],
    [new ConflictError('taken'), 'SLUICE_ERR_CONFLICT'],
    [new EngineError('an engine', 'refused'), 'SLUICE_ERR_ENGINE'],
    [new EngineFailedError('an engine', 'its thread exited'), 'SLUICE_ERR_ENGINE_FAILED'],
    [new SyscallError('bind', 'EADDRINUSE'), 'SLUICE_ERR_SYSCALL'],
    [new WireError('truncated', 'short', 'header'), 'SLUICE_ERR_WIRE'],
    [new ControlSocketError('/x.sock', 'taken'), 'SLUICE_ERR_CONTROL_SOCKET'],
    [new FileRefusedError('/x', 'EISDIR'), 'SLUICE_ERR_FILE_REFUSED'],
    [new ElfError('not an ELF file'), 'SLUICE_ERR_BPF_OBJECT'],
    [new StoreError('get', 'unavailable', 'connection refused'), 'SLUICE_ERR_STORE'],
  ];
  for (const [e, code] of samples) {
    assert.ok(e instanceof SluiceError && e instanceof Error, e.name);
    assert.equal(e.code, code, e.name);
  }
  assert.deepEqual([...new Set(samples.map(([, c]) => c))].sort(), [...SLUICE_ERROR_CODES].sort(), 'SLUICE_ERROR_CODES lists exactly the codes in use');
  assert.equal(new Set(SLUICE_ERROR_CODES).size, SLUICE_ERROR_CODES.length);
});

test('isSluiceError narrows by code', () => {
  const e: unknown = new ClosedError('flow f1');
  assert.equal(isSluiceError(e), true);
  assert.equal(isSluiceError(e, 'SLUICE_ERR_CLOSED'), true);
  assert.equal(isSluiceError(e, 'SLUICE_ERR_ENGINE'), false);
  assert.equal(isSluiceError(new Error('plain')), false);
  assert.equal(isSluiceError({ code: 'SLUICE_ERR_CLOSED' }), false, 'a look-alike object is not one');
  if (isSluiceError(e, 'SLUICE_ERR_CLOSED')) {
    const code: 'SLUICE_ERR_CLOSED' = e.code;
    assert.equal(code, 'SLUICE_ERR_CLOSED');
  }
  const engine = new EngineError('the kernel tier', 'no map');
  assert.equal(engine.engine, 'the kernel tier');
  assert.equal(engine.message, 'no map', 'the message is unchanged');
  assert.equal(engine.name, 'EngineError');
});

test('config, file and eBPF-object errors are SluiceErrors with their old names, fields and messages', () => {
  const config = (() => {
    try {
      parseTpoConfigText('name: [', 'x.yaml');
    } catch (err) {
      return err;
    }
    assert.fail('accepted');
  })();
  assert.ok(config instanceof TpoConfigError && config instanceof ConfigError && config instanceof SluiceError);
  assert.equal(config.name, 'TpoConfigError');
  assert.equal(config.code, 'SLUICE_ERR_INVALID_CONFIG');
  assert.equal(config.source, 'x.yaml');
  assert.ok(config.issues.length > 0);
  assert.equal(config.message, `invalid TPO config x.yaml:\n  ${config.issues.join('\n  ')}`);

  assert.throws(
    () => compileInterceptTable([{ protocol: 'icmp', dstPort: 80 }]),
    (e: unknown) =>
      e instanceof FlowTableError &&
      e instanceof ConfigError &&
      e.name === 'FlowTableError' &&
      e.code === 'SLUICE_ERR_INVALID_CONFIG' &&
      e.message === 'table[0]: ICMP has no ports' &&
      e.issues.length === 1 &&
      e.issues[0] === e.message,
  );

  assert.throws(
    () => readRegularFile('/', { maxBytes: 10 }),
    (e: unknown) =>
      e instanceof FileRefusedError && e.name === 'FileRefusedError' && e.code === 'SLUICE_ERR_FILE_REFUSED' && e.message === `cannot read /: ${e.reason}`,
  );

  assert.throws(
    () => parseBpfElf(new Uint8Array(64)),
    (e: unknown) => e instanceof ElfError && e.name === 'ElfError' && e.code === 'SLUICE_ERR_BPF_OBJECT' && e.message === 'eBPF object: not an ELF file',
  );
});

test("src/ throws an engine's refusal as EngineError, never as new SluiceError('SLUICE_ERR_ENGINE', ...)", () => {
  const src = fileURLToPath(new URL('../../src/', import.meta.url));
  const offenders = readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .filter((f) => /new SluiceError\(\s*'SLUICE_ERR_ENGINE'/.test(readFileSync(src + f, 'utf8')));
  assert.deepEqual(offenders, []);
});
