/**
 * `sluice run FILE...`: validates the specs, opens the log, starts the connectors and the admin API,
 * and runs in the foreground until SIGINT or SIGTERM, then shuts down gracefully: sources stop,
 * sinks flush, offsets are committed. A second signal exits at once.
 *
 * With `--cluster NAME` the process is one worker of a group sharing the same specs over the
 * JetStream log: it runs its share of the tasks (see core/cluster/worker-group.ts) and, on a
 * signal, hands them to the other workers before it exits.
 */
import type { Command } from 'commander';
import type { ConnectorRegistry } from '../connector.ts';
import type { Runtime as RuntimeType } from '../runtime/runtime.ts';
import type { LoadedSpec } from '../spec/index.ts';
import type { WorkerGroup as WorkerGroupType } from '../cluster/worker-group.ts';
import { bucketName, DEFAULT_LEASE_TIMINGS } from '../cluster/lease-bucket.ts';
import { DEFAULT_DATA_DIR, invalidArgument, parseNonNegativeInt } from './common.ts';

interface RunOptions {
  dataDir: string;
  api: string | false;
  apiToken?: string;
  statusInterval: number;
  logLevel?: string;
  pretty?: boolean;
  /** Printed before the connectors start: how to look at what the pipeline writes (npm start). */
  banner?: boolean;
  /** The worker group to join. */
  cluster?: string;
}

/** Registers the `run` command on the program. */
export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('run pipeline specs in the foreground until Ctrl-C')
    .argument('<file...>', 'pipeline spec files (YAML)')
    .option('--data-dir <dir>', 'where the log keeps its data', process.env['SLUICE_DATA_DIR'] ?? DEFAULT_DATA_DIR)
    .option('--api <host:port>', 'where the admin API listens', '127.0.0.1:8083')
    .option('--no-api', 'do not start the admin API')
    .option('--api-token <token>', 'require "Authorization: Bearer <token>" on the admin API (or $SLUICE_API_TOKEN)', process.env['SLUICE_API_TOKEN'])
    .option('--status-interval <seconds>', 'seconds between status lines; 0 for none', (v) => parseNonNegativeInt(v) * 1000, 10_000)
    .option('--log-level <level>', 'trace, debug, info, warn or error (or $SLUICE_LOG_LEVEL)')
    .option('--pretty', 'pretty log lines even when stdout is not a terminal')
    .option('--banner', 'print where the output goes and how to inspect it')
    .option('--cluster <name>', 'join the worker group NAME: workers started with the same specs share their tasks (needs log: { backend: jetstream })', parseClusterName)
    .addHelpText(
      'after',
      '\nThe specs are validated first; any problem is printed as FILE:LINE:COL and nothing starts.\n' +
        'Logs are JSON lines (pretty on a terminal). A status line per connector is logged every 10 s.\n\n' +
        'With --cluster NAME, every worker of the group is started with the same spec files, whose\n' +
        'log: block must say backend: jetstream. Each source and sink task runs on one worker at a\n' +
        `time, held by a lease in NATS (TTL ${DEFAULT_LEASE_TIMINGS.ttlMs / 1000} s, renewed every ${DEFAULT_LEASE_TIMINGS.renewEveryMs} ms); tasks spread evenly\n` +
        "and a dead worker's tasks move to the others within 10 s. Webhook sources run on every worker.\n" +
        'GET /cluster on any worker\'s admin API lists the workers and who runs which task.\n\n' +
        'Examples:\n  $ sluice run pipelines/quickstart.yaml\n  $ sluice run a.yaml b.yaml --data-dir /var/lib/sluice --api 127.0.0.1:9083\n  $ curl -s localhost:8083/connectors?expand=status\n  $ sluice run spec.yaml --cluster prod --api 127.0.0.1:8083     # on each of several machines\n  $ curl -s localhost:8083/cluster',
    )
    .action(async (files: string[], opts: RunOptions) => {
      process.exitCode = await run(files, opts);
    });
}

function parseClusterName(value: string): string {
  try {
    bucketName(value);
  } catch (err) {
    invalidArgument(`--cluster: ${(err as Error).message}`);
  }
  return value;
}

function parseListen(value: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(value);
  if (!match || Number(match[2]) > 65535) invalidArgument(`--api must be HOST:PORT, got ${JSON.stringify(value)}`);
  return { host: match![1]!.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1', port: Number(match![2]) };
}

async function run(files: string[], opts: RunOptions): Promise<number> {
  // Loaded here rather than at the top, so commands that never run a pipeline do not pay for
  // loading every connector and its drivers.
  const [{ registry }, { startAdminApi }, { createLogger }, { openLog }, { Runtime }, { formatProblem, scrubSecrets, validateSpecFiles }, { openConfiguredLog }] = await Promise.all([
    import('../../connectors/index.ts'),
    import('../api/server.ts'),
    import('../logging.ts'),
    import('../log/embedded-log.ts'),
    import('../runtime/runtime.ts'),
    import('../spec/index.ts'),
    import('../log/jetstream/open-log.ts'),
  ]);
  const { problems, specs } = await validateSpecFiles(files, { registry });
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(formatProblem(p) + '\n');
    process.stderr.write(`sluice: ${problems.length} problem${problems.length === 1 ? '' : 's'}; nothing was started\n`);
    return 1;
  }
  // Specs run together share one log (validation refuses differing log: blocks); a spec without
  // one runs on the log another names.
  const logSpec = specs.find((s) => s.spec.log.backend === 'jetstream')?.spec.log ?? specs[0]?.spec.log ?? { backend: 'embedded' as const };
  if (opts.cluster !== undefined && logSpec.backend !== 'jetstream') {
    process.stderr.write(
      `sluice: --cluster needs the jetstream log backend, so that the workers share one log; ${files.join(', ')} ${files.length === 1 ? 'has' : 'have'} log: { backend: embedded }.\n` +
        '        Add to the spec: log: { backend: jetstream, servers: [nats://127.0.0.1:4222], replicas: 3 }\n',
    );
    return 1;
  }
  const scrub = (text: string): string => specs.reduce((t, s) => scrubSecrets(t, s.secrets), text);
  const logger = createLogger({ scrub, ...(opts.logLevel ? { level: opts.logLevel } : {}), ...(opts.pretty ? { pretty: true } : {}) });
  const log = await openConfiguredLog({ backend: logSpec.backend, ...(logSpec.servers ? { servers: [...logSpec.servers] } : {}), ...(logSpec.replicas !== undefined ? { replicas: logSpec.replicas } : {}) }, () =>
    openLog(opts.dataDir, {
      onEvent: (event) => {
        if (event.type === 'maintenance-failed') logger.error({ err: event.error }, 'log maintenance failed');
        else logger.info(event, `log ${event.type}`);
      },
    }),
  );
  let runtime: RuntimeType | null = null;
  let group: WorkerGroupType | null = null;
  let api: { url: string; close(): Promise<void> } | null = null;
  const stopped = new Promise<string>((resolve) => {
    let firstAt = 0;
    const onSignal = (signal: string): void => {
      // The same signal often arrives twice at once (sent to the process and to its group); only a
      // second one a moment later means "stop waiting".
      if (firstAt > 0 && Date.now() - firstAt > 1000) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(130);
      }
      if (firstAt === 0) firstAt = Date.now();
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  try {
    if (opts.banner) printBanner(specs, opts, registry);
    const cluster = opts.cluster !== undefined ? await import('../cluster/index.ts') : null;
    runtime = await Runtime.start(specs, { log, registry, logger, statusIntervalMs: opts.statusInterval, ...(cluster ? { leased: cluster.isLeasedConnector } : {}) });
    if (cluster && opts.cluster !== undefined) {
      group = await cluster.WorkerGroup.join({
        cluster: opts.cluster,
        servers: [...(logSpec.servers ?? [])],
        ...(logSpec.replicas !== undefined ? { replicas: logSpec.replicas } : {}),
        host: cluster.runtimeHost(runtime),
        logger,
      });
    }
    if (opts.api !== false) {
      const { host, port } = parseListen(opts.api);
      api = await startAdminApi(runtime, { host, port, logger, scrub, ...(opts.apiToken ? { token: opts.apiToken } : {}), ...(group ? { cluster: group } : {}) });
      group?.advertise({ api: api.url });
    }
    // The API's address is only known once it listens (the port may be 0), so its lines come last.
    if (opts.banner) printApiBanner(api?.url ?? null);
    logger.info(
      { pipelines: specs.map((s) => s.spec.name), connectors: runtime.names(), data_dir: opts.dataDir, api: api?.url ?? null, ...(group ? { cluster: opts.cluster, worker_id: group.workerId } : {}) },
      `running ${runtime.names().length} connectors${group ? ` as worker ${group.workerId} of group ${opts.cluster}` : ''}; Ctrl-C to stop`,
    );
    const signal = await stopped;
    logger.info({ signal }, 'stopping: sources stop, sinks flush, offsets are committed');
    return 0;
  } finally {
    // Leaving first stops taking tasks at once, and hands each task to the others as soon as it
    // stopped here.
    await group?.leave().catch((err: unknown) => logger.warn({ err }, `leaving the worker group failed: ${(err as Error).message}`));
    await api?.close().catch(() => {});
    await runtime?.stop();
    await log.close();
    logger.info('stopped');
    logger.flush();
  }
}

function printBanner(specs: LoadedSpec[], opts: RunOptions, registry: ConnectorRegistry): void {
  const out = (line = ''): void => void process.stdout.write(line + '\n');
  const dataDirFlag = opts.dataDir === DEFAULT_DATA_DIR ? '' : ` --data-dir ${opts.dataDir}`;
  out('sluice is starting. What goes where:');
  for (const { spec } of specs) {
    for (const s of spec.sources) {
      const produced = s.topic === undefined ? (registry.sources.get(s.connector)?.producedTopics?.(s.config) ?? []) : [s.topic];
      out(`  source ${s.name} (${s.connector}) -> ${produced.length === 1 ? 'topic' : 'topics'} ${produced.join(', ') || '(named per record)'}`);
    }
    for (const s of spec.sinks) {
      const path = (s.config as { path?: unknown }).path;
      out(`  sink   ${s.name} (${s.connector}) <- ${s.topics.join(', ')}${typeof path === 'string' ? `, writing ${path}` : ''}`);
    }
  }
  const firstTopic = specs[0]?.spec.topics[0]?.name ?? specs[0]?.spec.sources[0]?.topic;
  out();
  out('Look at it from another terminal:');
  if (firstTopic) out(`  npx sluice consume ${firstTopic} --from-beginning --max 5${dataDirFlag}`);
  out(`  npx sluice topics describe ${firstTopic ?? 'TOPIC'}${dataDirFlag}`);
}

function printApiBanner(apiUrl: string | null): void {
  const out = (line = ''): void => void process.stdout.write(line + '\n');
  if (apiUrl !== null) {
    out(`  curl -s ${apiUrl}/connectors?expand=status`);
    out(`  curl -s ${apiUrl}/metrics | grep sluice_records`);
  }
  out('Stop with Ctrl-C; a restart continues where it stopped.');
  out();
}
