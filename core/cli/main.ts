/**
 * The `sluice` command line. `bin.js` loads this file through tsx; it parses `process.argv`, runs
 * one command and exits: 0 on success, 1 when the command failed, 2 for a usage error.
 *
 * Every failure is one line on stderr, `sluice: <message>`, because the CLI is used from shell
 * scripts and by people; a stack trace is printed only for an unexpected (non-SluiceError) failure
 * and only with `SLUICE_DEBUG=1`.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { isSluiceError } from '../errors.ts';
import { registerCdcCommands } from './cdc.ts';
import { registerConsumeCommand } from './consume.ts';
import { registerDemoCommand } from './demo.ts';
import { registerDlqCommands } from './dlq.ts';
import { registerPipelineCommands } from './pipelines.ts';
import { registerRunCommand } from './run.ts';
import { registerGroupsCommands } from './groups.ts';
import { registerProduceCommand } from './produce.ts';
import { registerTopicsCommands } from './topics.ts';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** Grace period after the command finished before exiting even though something still holds the event loop. */
const EXIT_GRACE_MS = 2000;

/** Builds the `sluice` program with all its commands; it throws instead of exiting, see {@link run}. */
function buildProgram(): Command {
  const program = new Command('sluice')
    .description('sluice: data integration on one machine, through an embedded durable log')
    .version(readVersion())
    // Settings are inherited by subcommands created after them, so they must come first.
    // Commander puts its "(Did you mean ...?)" hint on a line of its own; errors stay one line.
    .configureOutput({
      outputError: (text, write) => write(`sluice: ${text.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')}\n`),
    })
    .exitOverride()
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      '\nEvery command takes --data-dir DIR (default ./data, or $SLUICE_DATA_DIR).\n\n' +
        'Examples:\n' +
        '  $ sluice run pipelines/quickstart.yaml\n' +
        '  $ sluice validate pipelines/*.yaml\n' +
        '  $ sluice topics create orders --partitions 4\n' +
        "  $ echo '{\"id\":1,\"customer\":\"ada\"}' | sluice produce orders --key-field customer\n" +
        '  $ sluice consume orders --from-beginning --max 5\n' +
        '  $ sluice groups describe audit',
    );
  registerRunCommand(program);
  registerPipelineCommands(program);
  registerTopicsCommands(program);
  registerProduceCommand(program);
  registerConsumeCommand(program);
  registerGroupsCommands(program);
  registerDlqCommands(program);
  registerCdcCommands(program);
  registerDemoCommand(program);
  return program;
}

/** Runs the CLI on `argv` (as in `process.argv`) and returns the process exit code. Never throws. */
async function run(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    // A command that failed without throwing (validate with problems, run) set process.exitCode.
    return Number(process.exitCode ?? 0);
  } catch (err) {
    return reportError(err);
  }
}

function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander already printed the message (or the help) through configureOutput.
    return err.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  if (isSluiceError(err)) {
    process.stderr.write(`sluice: ${err.message}\n`);
    return EXIT_FAILURE;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (process.env['SLUICE_DEBUG'] === '1' && err instanceof Error && err.stack !== undefined) {
    process.stderr.write(`sluice: ${err.stack}\n`);
  } else {
    process.stderr.write(`sluice: unexpected error: ${message} (set SLUICE_DEBUG=1 for a stack trace)\n`);
  }
  return EXIT_FAILURE;
}

function readVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

process.exitCode = await run(process.argv);
// The command is finished and the log closed; a handle something forgot to release must not
// leave a shell script waiting. The timer is unref'ed, so a clean exit does not wait for it.
setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
