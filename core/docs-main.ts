/**
 * Writes every connector's reference doc, `connectors/<name>/README.md`, from its definition:
 * `node --import tsx core/docs-main.ts` (`npm run docs`). With `--check` it writes nothing and exits
 * 1 when a doc is stale, for CI. Either way it exits 1, before writing, when a config property has
 * no description: a setting without docs fails generation.
 */
import { fileURLToPath } from 'node:url';
import { registry } from '../connectors/index.ts';
import { missingDescriptions, writeConnectorDocs } from './docs.ts';

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--check');
if (unknown.length > 0) {
  process.stderr.write(`unknown argument ${unknown[0]}\nusage: node --import tsx core/docs-main.ts [--check]\n`);
  process.exit(2);
}
const check = args.includes('--check');
const root = fileURLToPath(new URL('..', import.meta.url));

const undocumented = [...registry.sources.values(), ...registry.sinks.values()].flatMap((c) =>
  missingDescriptions(c.configSchema).map((pointer) => `${c.kind} connector ${c.name}: config schema property ${pointer} has no description`),
);
if (undocumented.length > 0) {
  process.stderr.write(`${undocumented.join('\n')}\n`);
  process.exit(1);
}

const { stale } = writeConnectorDocs(registry, root, { check });
if (check) {
  for (const file of stale) process.stderr.write(`${file} is stale: run npm run docs\n`);
  process.exit(stale.length > 0 ? 1 : 0);
}
for (const file of stale) process.stdout.write(`wrote ${file}\n`);
if (stale.length === 0) process.stdout.write('connector docs are up to date\n');
