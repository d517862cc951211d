// `npm run bench -- sink-mysql`: the mysql sink vs mysql2 multi-row upserts; see sink-sql.ts.
import type { BenchContext } from './common.ts';
import { runSinkBench } from './sink-sql.ts';

export async function run(ctx: BenchContext): Promise<void> {
  await runSinkBench(ctx, 'mysql');
}
