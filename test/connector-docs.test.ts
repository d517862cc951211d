import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { registry } from '../connectors/index.ts';
import { missingDescriptions, writeConnectorDocs } from '../core/docs.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const connectors = [...registry.sources.values(), ...registry.sinks.values()];

describe('connector reference docs', () => {
  // Pins that every connector's README.md is exactly what the generator makes of its schema today.
  it('every README is up to date (run npm run docs when this fails)', () => {
    expect(writeConnectorDocs(registry, root, { check: true }).stale).toEqual([]);
  });

  // Pins that no config setting of any connector goes undocumented.
  it.each(connectors.map((c) => [`${c.kind} ${c.name}`, c] as const))('%s: every config property has a description', (_name, connector) => {
    expect(missingDescriptions(connector.configSchema)).toEqual([]);
  });
});
