/** The send engines by name: the factory the Sender uses (engines start nothing until their first send). */
import type { SendEngineName, TierName } from '../policy/schema.js';
import type { SendEngine } from './send-engine.js';
import { PortableSender } from './portable-sender.js';
import { BatchedSender } from './batched-sender.js';

/** The engine called `name`, labelling its results with `tier`. Nothing starts until the first send. */
export function createSendEngine(name: SendEngineName, tier: TierName): SendEngine {
  return name === 'portable' ? new PortableSender(tier) : new BatchedSender(tier);
}
