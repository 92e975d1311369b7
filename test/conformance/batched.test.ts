import { defineConformanceSuite } from './suite.js';
import { probeBatchedIo } from '../../src/sys/probe.js';

const probe = probeBatchedIo();
defineConformanceSuite({ tier: 'batched', ...(probe.available ? {} : { skip: `batched tier unavailable: ${probe.reason}` }) });
