/**
 * Picks the log backend a spec's `log:` section names. The CLI calls it once at start; the
 * embedded backend is passed as a factory so this module does not need to know the data directory.
 */
import { SluiceError } from '../../errors.ts';
import type { Log } from '../types.ts';
import { openJetStreamLog } from './jetstream-log.ts';

export async function openConfiguredLog(spec: { backend: 'embedded' | 'jetstream'; servers?: string[]; replicas?: number }, embedded: () => Promise<Log>): Promise<Log> {
  if (spec.backend === 'embedded') return embedded();
  if (spec.backend === 'jetstream') {
    return openJetStreamLog({ servers: spec.servers ?? ['nats://127.0.0.1:4222'], ...(spec.replicas !== undefined ? { replicas: spec.replicas } : {}) });
  }
  throw new SluiceError('CONFIG_INVALID', `log.backend must be embedded or jetstream, got ${JSON.stringify(spec.backend)}`, { context: { field: 'backend', value: spec.backend } });
}
