import { defineConformanceSuite } from './suite.js';

defineConformanceSuite({ tier: 'portable' });
