/**
 * The README's TPO table is the one a bench run rendered
 * (tpoWanReadmeTable), not figures typed in: the README names its run's
 * results file, and the table must match what that file renders to.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tpoWanReadmeTable } from '../../bench/lib/tpo-wan-report.js';

test("the README's TPO table is rendered from the results file it names", () => {
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('### TPO across an emulated lossy WAN'));
  const cited = /run `(bench\/results\/[^`]+)\.md`/.exec(section);
  assert.ok(cited, 'the TPO section names its results file (run `bench/results/….md`)');
  const results = JSON.parse(readFileSync(`${cited[1]}.json`, 'utf8')) as { tpoWan: Parameters<typeof tpoWanReadmeTable>[0] };
  const table = tpoWanReadmeTable(results.tpoWan);
  assert.ok(section.includes(table), `README's table differs from ${cited[1]}.json; paste this:\n${table}`);
});
