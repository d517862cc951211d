/**
 * `sluice demo`, what `npm start` runs until there is a pipeline runner: a one-minute tour that
 * writes keyed events, reads them back through a consumer group and shows the commands to explore
 * the result. Re-running it appends more events and the group reads only the new ones.
 */
import type { Command } from 'commander';
import type { Log } from '../log/types.ts';
import { addDataDirOption, DEFAULT_DATA_DIR, formatBytes, renderTable, withLog, type DataDirOptions } from './common.ts';

const TOPIC = 'demo-orders';
const GROUP = 'demo-reader';
const PARTITIONS = 4;
const EVENTS = 5000;
const BATCH = 500;
const CUSTOMERS = ['ada', 'grace', 'linus', 'margaret', 'ken', 'barbara', 'edsger', 'frances', 'alan', 'radia'];
const PRODUCTS = ['keyboard', 'monitor', 'mouse', 'laptop', 'cable', 'headset'];

/** Registers the `demo` command on the program. */
export function registerDemoCommand(program: Command): void {
  addDataDirOption(
    program
      .command('demo')
      .description(`write ${EVENTS} keyed order events to the "${TOPIC}" topic, read them back with a consumer group, and summarise`)
      .addHelpText('after', '\nExample:\n  $ npm start\n  $ sluice demo --data-dir /tmp/sluice-demo')
      .action(async (opts: DataDirOptions) => {
        await withLog(opts.dataDir, 'write', (log) => runDemo(log, opts.dataDir));
      }),
  );
}

async function runDemo(log: Log, dataDir: string): Promise<void> {
  const say = (line: string): void => void process.stdout.write(line + '\n');
  const existed = (await log.listTopics()).includes(TOPIC);
  const topic = await log.createTopic(TOPIC, { partitions: PARTITIONS }, { ifNotExists: true });
  say(
    existed
      ? `topic ${TOPIC} already exists (${topic.partitions.length} partitions) in ${dataDir}; appending more events`
      : `created topic ${TOPIC} with ${PARTITIONS} partitions in ${dataDir}`,
  );

  const started = Date.now();
  for (let sent = 0; sent < EVENTS; sent += BATCH) {
    const records = Array.from({ length: Math.min(BATCH, EVENTS - sent) }, (_, i) => {
      const n = sent + i;
      const customer = CUSTOMERS[n % CUSTOMERS.length] ?? 'ada';
      const event = {
        orderId: `${started.toString(36)}-${n}`,
        customer,
        product: PRODUCTS[(n * 7) % PRODUCTS.length],
        quantity: 1 + (n % 3),
        amount: Math.round((5 + ((n * 37) % 500)) * 100) / 100,
        at: new Date().toISOString(),
      };
      // Keyed by customer so each customer's orders stay in order on one partition.
      return { key: Buffer.from(customer), value: Buffer.from(JSON.stringify(event)) };
    });
    await log.append(TOPIC, records);
    const done = sent + records.length;
    if (done % 1000 === 0 || done === EVENTS) say(`  appended ${done}/${EVENTS} events`);
  }
  say(`appended ${EVENTS} events in ${Date.now() - started} ms (keyed by customer, so each customer's orders share a partition)`);

  const description = await log.describeTopic(TOPIC);
  const ends = new Map(description.partitions.map((p) => [p.partition, p.endOffset]));
  const readPerPartition = new Map<number, number>();
  const consumer = await log.subscribe(GROUP, [TOPIC], { autoOffsetReset: 'earliest' });
  try {
    // Positions are only trusted after a first poll: a consumer may learn its assignment lazily.
    let polled = false;
    const caughtUp = (): boolean => polled && consumer.positions().every((p) => p.offset >= (ends.get(p.partition) ?? 0n));
    while (!caughtUp()) {
      const records = await consumer.poll({ maxWaitMs: 100 });
      polled = true;
      for (const r of records) readPerPartition.set(r.partition, (readPerPartition.get(r.partition) ?? 0) + 1);
      await consumer.commit();
    }
  } finally {
    await consumer.close();
  }
  const totalRead = [...readPerPartition.values()].reduce((a, b) => a + b, 0);
  say(`read ${totalRead} new events back as consumer group ${GROUP} and committed its offsets:\n`);

  const rows = description.partitions.map((p) => [
    String(p.partition),
    String(readPerPartition.get(p.partition) ?? 0),
    p.startOffset.toString(),
    p.endOffset.toString(),
    formatBytes(p.sizeBytes),
  ]);
  process.stdout.write(
    renderTable(['PARTITION', 'READ NOW', 'START', 'END', 'SIZE'], rows, new Set(['PARTITION', 'READ NOW', 'START', 'END', 'SIZE'])),
  );

  const quoted = /^[\w./-]+$/.test(dataDir) ? dataDir : `'${dataDir.replaceAll("'", "'\\''")}'`;
  const dirFlag = dataDir === DEFAULT_DATA_DIR ? '' : ` --data-dir ${quoted}`;
  say(
    '\nTry next:\n' +
      `  npx sluice topics describe ${TOPIC}${dirFlag}\n` +
      `  npx sluice consume ${TOPIC} --from-beginning --max 5${dirFlag}\n` +
      `  npx sluice groups describe ${GROUP}${dirFlag}\n` +
      `  echo '{"customer":"ada","product":"mouse","amount":19.5}' | npx sluice produce ${TOPIC} --key-field customer${dirFlag}\n` +
      `  npm start   # again: appends ${EVENTS} more, and ${GROUP} reads only those`,
  );
}
