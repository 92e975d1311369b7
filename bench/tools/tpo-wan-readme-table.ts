/**
 * Prints the README's TPO table from a bench run's results (the .json
 * beside its .md), for pasting into README.md:
 *
 *   node --import tsx bench/tools/tpo-wan-readme-table.ts bench/results/STAMP-vm.json
 */
import { readFileSync } from 'node:fs';
import { tpoWanReadmeTable } from '../lib/tpo-wan-report.js';

const file = process.argv[2];
if (!file) throw new Error('usage: tpo-wan-readme-table.ts bench/results/STAMP-vm.json');
process.stdout.write(`${tpoWanReadmeTable(JSON.parse(readFileSync(file, 'utf8')).tpoWan)}\n`);
