/**
 * `sluice cdc reset PIPELINE SOURCE`: the documented recovery of a postgres-cdc source whose
 * replication slot was invalidated (or that must start over): forget its stored source offsets so
 * its next start takes a new snapshot with a new slot.
 *
 * It takes the data directory's lock, so it refuses to run while the pipeline runs. PIPELINE is the
 * pipeline's name, or its spec file: with the file, the slot is also dropped right away (through the
 * source's connection settings), releasing the WAL it holds; with the name, the connector drops and
 * re-creates the slot itself when it next starts without offsets.
 */
import { existsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import type { SourceOffsetStore as SourceOffsetStoreType } from '../runtime/source-offsets.ts';
import { addDataDirOption, invalidArgument, withLog, type DataDirOptions } from './common.ts';

const CDC_CONNECTORS = new Set(['postgres-cdc']);

/** Registers the `cdc` command group on the program. */
export function registerCdcCommands(program: Command): void {
  const cdc = program.command('cdc').description('manage change data capture sources (postgres-cdc)');

  addDataDirOption(
    cdc
      .command('reset')
      .description('forget a CDC source\'s offsets (and drop its slot) so that its next start re-creates the slot and takes a new snapshot')
      .argument('<pipeline>', 'the pipeline name, or its spec file (then the slot is dropped at once too)')
      .argument('<source>', 'the source entry name in the spec')
      .addHelpText(
        'after',
        '\nStop the pipeline first: the command takes the data directory lock.\n\n' +
          'Examples:\n  $ sluice cdc reset postgres-cdc orders-cdc\n  $ sluice cdc reset pipelines/postgres-cdc.yaml orders-cdc --data-dir /var/lib/sluice',
      )
      .action(async (pipelineArg: string, source: string, opts: DataDirOptions) => {
        const fromFile = isSpecFile(pipelineArg) ? await sourceFromSpec(pipelineArg, source) : null;
        const pipeline = fromFile?.pipeline ?? pipelineArg;
        const { SourceOffsetStore } = await import('../runtime/source-offsets.ts');
        await withLog(opts.dataDir, 'write', async (log) => {
          const store: SourceOffsetStoreType = await SourceOffsetStore.open(log);
          const stored = store.offsets(pipeline, source);
          if (stored.length === 0 && !fromFile) {
            invalidArgument(`no stored offsets for source ${source} of pipeline ${pipeline} in ${opts.dataDir}: check the names (and --data-dir); nothing was changed`, {
              pipeline,
              connector: source,
            });
          }
          let dropped: boolean | null = null;
          if (fromFile) {
            const { dropReplicationSlot } = await import('../../connectors/postgres-cdc/index.ts');
            dropped = await dropReplicationSlot(fromFile.config);
          }
          await store.reset(pipeline, source);
          const slot = fromFile ? `slot ${String(fromFile.config['slot'])} ${dropped ? 'dropped' : 'did not exist'}; ` : '';
          process.stdout.write(
            `reset ${pipeline}/${source}: forgot ${stored.length} stored offset${stored.length === 1 ? '' : 's'}; ${slot}` +
              'its next start creates a new replication slot and takes a new snapshot\n',
          );
        });
      }),
  );
}

function isSpecFile(arg: string): boolean {
  return /\.ya?ml$/i.test(arg) && existsSync(arg) && statSync(arg).isFile();
}

/** The pipeline name and the source's config from a spec file, validated as `run` validates it. */
async function sourceFromSpec(file: string, source: string): Promise<{ pipeline: string; config: Record<string, unknown> }> {
  const [{ registry }, { loadSpec }] = await Promise.all([import('../../connectors/index.ts'), import('../spec/index.ts')]);
  const loaded = await loadSpec(file, { registry });
  const entry = loaded.spec.sources.find((s) => s.name === source);
  if (!entry) {
    invalidArgument(`${file} has no source named ${source}; its sources: ${loaded.spec.sources.map((s) => s.name).join(', ') || '(none)'}`, { connector: source });
  }
  if (!CDC_CONNECTORS.has(entry!.connector)) {
    invalidArgument(`source ${source} in ${file} is a ${entry!.connector} source; cdc reset applies to ${[...CDC_CONNECTORS].join(', ')} sources`, { connector: source });
  }
  return { pipeline: loaded.spec.name, config: entry!.config as Record<string, unknown> };
}
