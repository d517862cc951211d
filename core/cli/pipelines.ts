/**
 * Commands about pipeline specs and connectors: `validate`, `schema`, `connectors` and
 * `connectors describe`. They need no data directory.
 */
import type { Command } from 'commander';
import { composeSpecSchema, formatProblem, validateSpecFiles } from '../spec/index.ts';
import { didYouMean } from '../spec/suggest.ts';
import { invalidArgument, renderTable } from './common.ts';

/** Loaded on use, so commands that need no connector do not load them all (and their drivers). */
async function loadRegistry() {
  return (await import('../../connectors/index.ts')).registry;
}

/** Registers `validate`, `schema` and `connectors` on the program. */
export function registerPipelineCommands(program: Command): void {
  program
    .command('validate')
    .description('check pipeline specs; prints ok, or one FILE:LINE:COL line per problem and exits 1')
    .argument('<file...>', 'pipeline spec files (YAML), checked together so topics may cross files')
    .addHelpText('after', '\nExample:\n  $ sluice validate pipelines/*.yaml\n  pipelines/orders.yaml:12:11: /sources/0/config/rate: must be integer')
    .action(async (files: string[]) => {
      const registry = await loadRegistry();
      const { problems } = await validateSpecFiles(files, { registry });
      if (problems.length === 0) {
        process.stdout.write('ok\n');
        return;
      }
      for (const p of problems) process.stdout.write(formatProblem(p) + '\n');
      process.exitCode = 1;
    });

  program
    .command('schema')
    .description('print the JSON Schema of pipeline specs, for editors (yaml-language-server)')
    .addHelpText('after', '\nExample:\n  $ sluice schema > sluice.schema.json\n  # then, first line of a spec:  # yaml-language-server: $schema=./sluice.schema.json')
    .action(async () => {
      const registry = await loadRegistry();
      process.stdout.write(JSON.stringify(composeSpecSchema(registry, { forEditors: true }), null, 2) + '\n');
    });

  const connectors = program
    .command('connectors')
    .description('list the connectors, or describe one')
    .addHelpText('after', '\nExamples:\n  $ sluice connectors\n  $ sluice connectors describe file')
    .action(async () => {
      const registry = await loadRegistry();
      const rows = [...registry.sources.values(), ...registry.sinks.values()].map((c) => [c.name, c.kind, firstSentence(c.description)]);
      process.stdout.write(renderTable(['NAME', 'KIND', 'DESCRIPTION'], rows) + '\n');
    });
  connectors
    .command('describe')
    .description("print a connector's config reference, generated from its schema")
    .argument('<name>', 'the connector type, e.g. datagen')
    .option('--kind <kind>', 'source or sink, when a source and a sink share the name')
    .action(async (name: string, opts: { kind?: string }) => {
      const registry = await loadRegistry();
      const { renderConnectorDoc } = await import('../docs.ts');
      const matches = [registry.sources.get(name), registry.sinks.get(name)].filter((c) => c !== undefined && (!opts.kind || c.kind === opts.kind));
      if (matches.length === 0) {
        const known = [...registry.sources.keys(), ...registry.sinks.keys()];
        const hint = didYouMean(name, known);
        invalidArgument(`unknown connector ${JSON.stringify(name)}${hint ? `; did you mean ${hint}?` : ''} (known: ${[...new Set(known)].sort().join(', ')})`);
      }
      for (const c of matches) process.stdout.write(renderConnectorDoc(c!) + '\n');
    });
}

function firstSentence(text: string): string {
  const match = /^(.*?[.!?])(\s|$)/.exec(text);
  return match ? match[1]! : text;
}
