import { defineRelayFuzzSuite } from './relay-suite.js';

defineRelayFuzzSuite({ tier: 'portable' });
