/**
 * The one contract every one-shot send engine meets: it sends validated
 * aggregates and segmented writes and labels every result with its own
 * name and the tier it serves. Which engine a tier uses is the tier
 * registry's business (dataplane/tiers.ts), not the caller's.
 */
import type { SendableAggregate, SegmentSpec, SendEngineName } from '../policy/schema.js';
import type { AggregateResult, WriteResult } from './results.js';

export interface SendEngine {
  readonly name: SendEngineName;
  /** Sends `spec` on its schedule; resolves once, after the last message. */
  sendAggregate(spec: SendableAggregate): Promise<AggregateResult>;
  /** Cuts and sends a segmented write; resolves once, after the last packet. */
  write(spec: SegmentSpec): Promise<WriteResult>;
  /** Releases the engine. Idempotent; sends still in flight reject with ClosedError or complete, as the engine documents. */
  close(): Promise<void>;
}
