// `npm run bench -- sink-postgres`: the postgres sink vs COPY; see sink-sql.ts.
import type { BenchContext } from './common.ts';
import { runSinkBench } from './sink-sql.ts';

export async function run(ctx: BenchContext): Promise<void> {
  await runSinkBench(ctx, 'postgres');
}
