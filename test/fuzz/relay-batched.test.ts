import { defineRelayFuzzSuite } from './relay-suite.js';
import { probeBatchedIo } from '../../src/sys/probe.js';

const probe = probeBatchedIo();
defineRelayFuzzSuite({ tier: 'batched', ...(probe.available ? {} : { skip: `batched tier unavailable: ${probe.reason}` }) });
