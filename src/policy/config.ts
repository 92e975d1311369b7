/**
 * Config files (YAML, or JSON which is YAML too): text in, validated
 * ConfigSpec out. Pure; the CLI reads the file.
 */
import { parseDocument } from 'yaml';
import { PolicyValidationError } from '../errors.js';
import type { FlowPolicy, TierChoice } from './schema.js';

/**
 * A validated config: the tier, and each flow as written (validated, not
 * normalized), ready to hand to `Sluice.apply` — which validates again, so
 * the library stays the one boundary.
 */
export interface LoadedConfig {
  readonly tier: TierChoice;
  readonly flows: readonly FlowPolicy[];
}
import { parseConfig } from './validate.js';

/**
 * Parses and validates a config document. YAML syntax errors and duplicate
 * keys are reported with their line, schema errors with their field path.
 */
export function parseConfigText(text: string, source = 'config'): LoadedConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length) {
    throw new PolicyValidationError(
      doc.errors.map((e) => ({ path: '', message: `${source}:${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}` })),
      `cannot parse ${source}`,
    );
  }
  const value: unknown = doc.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PolicyValidationError([{ path: '', message: 'expected a mapping with a flows: list' }], `invalid config ${source}`);
  }
  try {
    const spec = parseConfig(value);
    return { tier: spec.tier, flows: (value as { flows: FlowPolicy[] }).flows };
  } catch (err) {
    if (err instanceof PolicyValidationError) throw new PolicyValidationError(err.issues, `invalid config ${source}`);
    throw err;
  }
}
